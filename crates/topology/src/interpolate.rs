//! `${VAR}` / `${VAR:-default}` / `$$` substitution inside one string scalar.
//!
//! Runs on scalars *after* YAML parsing, so a substituted value is never re-parsed as YAML
//! structure: a password containing `: ` or `#` stays a password.

use std::collections::BTreeMap;

/// The result of substituting one scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Substituted {
    /// The scalar with every reference replaced and `$$` turned into `$`.
    pub(crate) text: String,
    /// The scalar was exactly one `${...}` and nothing else; its text then takes whatever type the
    /// setting expects (`partitions: ${N:-6}` is an integer).
    pub(crate) whole_reference: bool,
}

/// Why a scalar could not be substituted. Messages never quote the scalar, which may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InterpolateError {
    #[error(
        "environment variable `{0}` is not set and has no default (write `${{{0}:-default}}` to give one)"
    )]
    Unset(String),
    #[error("unterminated `${{` (write `$$` for a literal `$`)")]
    Unterminated,
    #[error(
        "invalid environment variable name in `${{...}}`: names are ASCII letters, digits and `_`, not starting with a digit (write `$$` for a literal `$`)"
    )]
    InvalidName,
    #[error(
        "a default value cannot contain `${{`: references do not nest (write `$$` for a literal `$`)"
    )]
    NestedReference,
    #[error("a `$` must start `${{NAME}}` or be doubled as `$$` for a literal `$`")]
    LoneDollar,
}

/// Substitutes `${VAR}` (error if unset), `${VAR:-default}` (default if unset or empty) and `$$`
/// (a literal `$`) in `template`; any other `$` is an error, so a typo cannot silently survive.
/// Values from `env` are inserted verbatim, never substituted again. The default runs to the
/// first `}` and may use `$$` but no `${`.
pub(crate) fn interpolate(
    template: &str,
    env: &BTreeMap<String, String>,
) -> Result<Substituted, InterpolateError> {
    let mut text = String::with_capacity(template.len());
    let mut rest = template;
    let mut references = 0_usize;
    let mut other_text = false;
    while let Some(dollar) = rest.find('$') {
        other_text |= dollar > 0;
        text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            other_text = true;
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let end = body_and_tail
                .find('}')
                .ok_or(InterpolateError::Unterminated)?;
            text.push_str(&substitute(&body_and_tail[..end], env)?);
            references += 1;
            rest = &body_and_tail[end + 1..];
        } else {
            return Err(InterpolateError::LoneDollar);
        }
    }
    other_text |= !rest.is_empty();
    text.push_str(rest);
    Ok(Substituted {
        text,
        whole_reference: references == 1 && !other_text,
    })
}

/// The value of one reference, given the text between `${` and `}`.
fn substitute(body: &str, env: &BTreeMap<String, String>) -> Result<String, InterpolateError> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_variable_name(name) {
        return Err(InterpolateError::InvalidName);
    }
    match (env.get(name), default) {
        (Some(value), Some(default)) if value.is_empty() => unescape_default(default),
        (Some(value), _) => Ok(value.clone()),
        (None, Some(default)) => unescape_default(default),
        (None, None) => Err(InterpolateError::Unset(name.to_owned())),
    }
}

fn unescape_default(default: &str) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(default.len());
    let mut chars = default.chars();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.next() {
                Some('$') => {}
                Some('{') => return Err(InterpolateError::NestedReference),
                _ => return Err(InterpolateError::LoneDollar),
            }
        }
        out.push(c);
    }
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(template: &str, pairs: &[(&str, &str)]) -> Result<Substituted, InterpolateError> {
        interpolate(template, &env(pairs))
    }

    #[test]
    fn plain_text_is_unchanged() {
        let out = run("127.0.0.1:9092", &[]).unwrap();
        assert_eq!(out.text, "127.0.0.1:9092");
        assert!(!out.whole_reference);
    }

    #[test]
    fn references_defaults_and_escapes() {
        let out = run("${HOST:-localhost}:${PORT}", &[("PORT", "9092")]).unwrap();
        assert_eq!(out.text, "localhost:9092");
        assert!(!out.whole_reference);

        let out = run("${N:-6}", &[]).unwrap();
        assert_eq!(out.text, "6");
        assert!(out.whole_reference);

        assert_eq!(run("${N:-6}", &[("N", "12")]).unwrap().text, "12");
        assert_eq!(run("${N:-6}", &[("N", "")]).unwrap().text, "6");
        assert_eq!(run("${N}", &[("N", "")]).unwrap().text, "");
        assert_eq!(run("pa$$word", &[]).unwrap().text, "pa$word");
        assert_eq!(run("$${N}", &[]).unwrap().text, "${N}");
        assert_eq!(run("${N:-a$$b}", &[]).unwrap().text, "a$b");
        assert!(!run("$${N}", &[]).unwrap().whole_reference);
        assert!(!run(" ${N:-1}", &[]).unwrap().whole_reference);
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("x${MISSING}", &[]),
            Err(InterpolateError::Unset("MISSING".into()))
        );
        assert_eq!(run("${OPEN", &[]), Err(InterpolateError::Unterminated));
        assert_eq!(run("${}", &[]), Err(InterpolateError::InvalidName));
        assert_eq!(run("${1X}", &[]), Err(InterpolateError::InvalidName));
        assert_eq!(run("${A B}", &[]), Err(InterpolateError::InvalidName));
        assert_eq!(
            run("${A:-${B}}", &[]),
            Err(InterpolateError::NestedReference)
        );
        assert_eq!(run("a$b", &[]), Err(InterpolateError::LoneDollar));
        assert_eq!(run("a$", &[]), Err(InterpolateError::LoneDollar));
        assert_eq!(run("${A:-x$}", &[]), Err(InterpolateError::LoneDollar));
        let message = InterpolateError::Unset("X".into()).to_string();
        assert!(
            message.contains("`X`") && message.contains("${X:-default}"),
            "{message}"
        );
    }

    /// One piece of a generated template.
    #[derive(Debug, Clone)]
    enum Piece {
        Literal(String),
        Escape,
        Reference {
            name: String,
            default: Option<String>,
        },
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            "[a-z0-9 {}:/.-]{0,6}".prop_map(Piece::Literal),
            Just(Piece::Escape),
            ("[A-C]", proptest::option::of("[a-z0-9 {:/.-]{0,5}"))
                .prop_map(|(name, default)| Piece::Reference { name, default }),
        ]
    }

    fn render(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(s) => s.clone(),
                Piece::Escape => "$$".to_owned(),
                Piece::Reference {
                    name,
                    default: None,
                } => format!("${{{name}}}"),
                Piece::Reference {
                    name,
                    default: Some(d),
                } => format!("${{{name}:-{d}}}"),
            })
            .collect()
    }

    /// What substitution should produce, or `None` if some reference is unset without default.
    fn expected(pieces: &[Piece], env: &BTreeMap<String, String>) -> Option<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(s) => Some(s.clone()),
                Piece::Escape => Some("$".to_owned()),
                Piece::Reference { name, default } => match (env.get(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => Some(d.clone()),
                    (Some(v), _) => Some(v.clone()),
                    (None, d) => d.clone(),
                },
            })
            .collect()
    }

    fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[A-C]", "[a-z0-9{}]{0,4}", 0..3)
    }

    proptest! {
        #[test]
        fn substitution_matches_the_model(
            pieces in proptest::collection::vec(piece(), 0..8),
            env in environment(),
        ) {
            let template = render(&pieces);
            match (interpolate(&template, &env), expected(&pieces, &env)) {
                (Ok(out), Some(want)) => prop_assert_eq!(out.text, want),
                (Err(InterpolateError::Unset(_)), None) => {}
                (got, want) => prop_assert!(false, "{template:?}: got {got:?}, want {want:?}"),
            }
        }

        #[test]
        fn defaults_are_used_when_unset(name in "[A-C]", default in "[a-z0-9 .:/-]{0,8}") {
            let out = interpolate(&format!("${{{name}:-{default}}}"), &BTreeMap::new()).unwrap();
            prop_assert!(out.whole_reference);
            prop_assert_eq!(out.text, default);
        }

        /// On arbitrary input (and environment values without `$`), every `$` in the output comes
        /// from a `$$` escape: no `${` survives substitution unless it was escaped.
        #[test]
        fn no_reference_survives(template in "[a-z${}:-]{0,16}", env in environment()) {
            if let Ok(out) = interpolate(&template, &env) {
                let escapes = template.matches("$$").count();
                prop_assert!(out.text.matches('$').count() <= escapes, "{template:?} -> {:?}", out.text);
                if escapes == 0 {
                    prop_assert!(!out.text.contains("${"), "{template:?} -> {:?}", out.text);
                }
            }
        }
    }
}
