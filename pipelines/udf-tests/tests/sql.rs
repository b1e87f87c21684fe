//! The Arroyo SQL pipelines `pipelines/*.sql`: they parse, use only tables and views they
//! declare, call only Arroyo built-ins and the UDFs the crates export (with the right
//! number of arguments), read Kafka topics that `topology.yaml` declares with columns their
//! Avro schemas have, and use Avro with the Confluent schema registry throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sqlparser::ast::{
    CreateTableOptions, Expr, ObjectName, SqlOption, Statement, TableObject, Value,
    visit_expressions, visit_relations,
};
use sqlparser::dialect::{GenericDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;
use surgeflow_udf_tests::{exported_udfs, pipelines_dir, read};

/// Functions Arroyo (DataFusion) provides that the pipelines may call.
const BUILTINS: [&str; 5] = ["hop", "tumble", "count", "last_value", "coalesce"];

fn sql_files() -> Vec<PathBuf> {
    let dir = pipelines_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pipelines/ readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pipelines/*.sql");
    files
}

fn parse(path: &Path) -> Vec<Statement> {
    let sql = read(path).expect("readable SQL");
    // Both dialects, so the files stay within what Arroyo's (PostgreSQL-like) parser takes.
    Parser::parse_sql(&GenericDialect {}, &sql)
        .unwrap_or_else(|e| panic!("{}: generic dialect: {e}", path.display()));
    Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .unwrap_or_else(|e| panic!("{}: PostgreSQL dialect: {e}", path.display()))
}

fn name_of(name: &ObjectName) -> String {
    name.to_string().trim_matches('"').to_lowercase()
}

/// A `CREATE TABLE`: its columns and `WITH` options (keys without quotes, string values).
struct Table {
    columns: Vec<String>,
    options: BTreeMap<String, String>,
}

fn options(table_options: &CreateTableOptions) -> BTreeMap<String, String> {
    let CreateTableOptions::With(options) = table_options else {
        return BTreeMap::new();
    };
    options
        .iter()
        .filter_map(|option| match option {
            SqlOption::KeyValue { key, value } => {
                let value = match value {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                Some((key.value.clone(), value))
            }
            _ => None,
        })
        .collect()
}

fn tables(statements: &[Statement]) -> BTreeMap<String, Table> {
    statements
        .iter()
        .filter_map(|s| match s {
            Statement::CreateTable(t) => Some((
                name_of(&t.name),
                Table {
                    columns: t.columns.iter().map(|c| c.name.value.clone()).collect(),
                    options: options(&t.table_options),
                },
            )),
            _ => None,
        })
        .collect()
}

fn views(statements: &[Statement]) -> BTreeSet<String> {
    statements
        .iter()
        .filter_map(|s| match s {
            Statement::CreateView { name, .. } => Some(name_of(name)),
            _ => None,
        })
        .collect()
}

/// `topics:` of topology.yaml: topic name → path of its value schema.
fn topology_topics() -> BTreeMap<String, String> {
    let path = pipelines_dir().join("../topology.yaml");
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&path).expect("topology.yaml")).expect("valid YAML");
    yaml["topics"]
        .as_mapping()
        .expect("topics: mapping")
        .iter()
        .map(|(name, topic)| {
            (
                name.as_str().expect("topic name").to_string(),
                topic["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Field names of an Avro record schema file.
fn avro_fields(schema: &str) -> BTreeSet<String> {
    let path = pipelines_dir().join("..").join(schema);
    let json: serde_json::Value =
        serde_json::from_str(&read(&path).expect("schema readable")).expect("schema is JSON");
    json["fields"]
        .as_array()
        .expect("record fields")
        .iter()
        .map(|f| f["name"].as_str().expect("field name").to_string())
        .collect()
}

#[test]
fn pipelines_reference_only_declared_tables() {
    for path in sql_files() {
        let statements = parse(&path);
        let declared: BTreeSet<String> = tables(&statements)
            .into_keys()
            .chain(views(&statements))
            .collect();
        let mut referenced = BTreeSet::new();
        let _ = visit_relations(&statements, |name| {
            referenced.insert(name_of(name));
            ControlFlow::<()>::Continue(())
        });
        for s in &statements {
            if let Statement::Insert(insert) = s {
                let TableObject::TableName(name) = &insert.table else {
                    panic!("{}: INSERT into a table function", path.display());
                };
                let target = name_of(name);
                assert!(
                    tables(&statements)
                        .get(&target)
                        .is_some_and(|t| t.options.get("type").is_some_and(|v| v == "sink")),
                    "{}: INSERT INTO {target}, not a declared sink table",
                    path.display()
                );
                referenced.insert(target);
            }
        }
        assert!(!referenced.is_empty(), "{}: reads nothing", path.display());
        let undeclared: Vec<_> = referenced.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{}: undeclared {undeclared:?}",
            path.display()
        );
    }
}

#[test]
fn pipelines_call_only_builtins_and_exported_udfs() {
    let udfs: BTreeMap<String, usize> = exported_udfs()
        .expect("UDF sources readable")
        .into_iter()
        .map(|u| (u.name, u.arity))
        .collect();
    assert_eq!(udfs.len(), 6, "one UDF per crate: {udfs:?}");
    let mut used = BTreeSet::new();
    for path in sql_files() {
        let statements = parse(&path);
        let _ = visit_expressions(&statements, |expr| {
            if let Expr::Function(f) = expr {
                let name = name_of(&f.name);
                let args = match &f.args {
                    sqlparser::ast::FunctionArguments::List(list) => list.args.len(),
                    _ => 0,
                };
                match udfs.get(&name) {
                    Some(&arity) => assert_eq!(
                        args,
                        arity,
                        "{}: {name} takes {arity} arguments",
                        path.display()
                    ),
                    None => assert!(
                        BUILTINS.contains(&name.as_str()),
                        "{}: {name} is neither a built-in nor an exported UDF",
                        path.display()
                    ),
                }
                used.insert(name);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    for needed in ["surge_multiplier", "geohash_cell"] {
        assert!(used.contains(needed), "no pipeline calls {needed}");
    }
}

#[test]
fn kafka_tables_match_the_topology_and_use_the_schema_registry() {
    let topics = topology_topics();
    let mut read_topics = BTreeSet::new();
    for path in sql_files() {
        for (name, table) in tables(&parse(&path)) {
            let o = &table.options;
            let get = |key: &str| o.get(key).map(String::as_str);
            assert_eq!(get("connector"), Some("kafka"), "{name}");
            assert_eq!(get("format"), Some("avro"), "{name}");
            assert_eq!(
                get("avro.confluent_schema_registry"),
                Some("true"),
                "{name}"
            );
            assert!(
                get("schema_registry.endpoint").is_some(),
                "{name}: no registry"
            );
            assert!(
                get("bootstrap_servers").is_some(),
                "{name}: no bootstrap_servers"
            );
            let topic = get("topic").unwrap_or_else(|| panic!("{name}: no topic"));
            match get("type") {
                Some("source") => {
                    let schema = topics
                        .get(topic)
                        .unwrap_or_else(|| panic!("{name} reads {topic}, not in topology.yaml"));
                    let fields = avro_fields(schema);
                    for column in &table.columns {
                        assert!(fields.contains(column), "{name}.{column} not in {schema}");
                    }
                    assert!(get("event_time_field").is_some(), "{name}: no event time");
                    read_topics.insert(topic.to_string());
                }
                Some("sink") => {
                    assert!(
                        topics.contains_key(topic),
                        "{name} writes {topic}: declare it in topology.yaml"
                    );
                    assert_eq!(get("sink.commit_mode"), Some("exactly_once"), "{name}");
                }
                other => panic!("{name}: type {other:?}"),
            }
        }
    }
    assert_eq!(
        read_topics,
        BTreeSet::from(["location.update".to_string(), "trip.requested".to_string()])
    );
}
