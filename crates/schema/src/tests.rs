use std::collections::BTreeSet;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::RecordSchema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;

use super::*;

/// Encodes with serde straight into Avro (the path the operators use).
fn encode<T: AvroRecord>(value: &T) -> Vec<u8> {
    GenericDatumWriter::builder(T::schema())
        .build()
        .unwrap()
        .write_ser_to_vec(value)
        .unwrap()
}

/// Decodes with serde straight from Avro bytes, checking every byte was used.
fn decode<T: AvroRecord>(bytes: &[u8]) -> T {
    let reader = GenericDatumReader::builder(T::schema()).build().unwrap();
    let mut slice = bytes;
    let value = reader.read_deser::<T>(&mut slice).unwrap();
    assert!(slice.is_empty(), "{} trailing bytes", slice.len());
    value
}

/// Round-trips through Avro, and checks the serde path writes what the generic `Value` path
/// writes, so records we produce are readable by any Avro implementation.
fn assert_round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = encode(value);
    let generic = GenericDatumWriter::builder(T::schema())
        .build()
        .unwrap()
        .write_value_to_vec(apache_avro::to_value(value).unwrap())
        .unwrap();
    assert_eq!(
        bytes, generic,
        "serde and Value encodings differ for {value:?}"
    );
    assert_eq!(&decode::<T>(&bytes), value);
}

fn record_fields(schema: &Schema) -> BTreeSet<String> {
    match schema {
        Schema::Record(RecordSchema { fields, .. }) => {
            fields.iter().map(|f| f.name.clone()).collect()
        }
        other => panic!("not a record: {other:?}"),
    }
}

/// The Rust type has exactly the schema's fields (serde_json shows the Rust side's names).
fn assert_mirrors<T: AvroRecord>(sample: &T) {
    let json = serde_json::to_value(sample).unwrap();
    let rust: BTreeSet<String> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        rust,
        record_fields(T::schema()),
        "{} and its Rust type differ",
        T::SCHEMA_FILE
    );
}

fn location_update() -> LocationUpdate {
    LocationUpdate {
        driver_id: "d-1".into(),
        lat: 40.716976,
        lon: -73.956528,
        accuracy_m: Some(8.5),
        speed_mps: None,
        heading_deg: Some(270.0),
        status: DriverStatus::Available,
        product: Product::Economy,
        event_time: 1_356_998_400_000,
    }
}

fn geo_trip() -> GeoTrip {
    GeoTrip {
        kind: TripEventKind::DriverArrived,
        trip_id: "t-9".into(),
        rider_id: "r-2".into(),
        product: Product::Xl,
        pickup_lat: 40.7,
        pickup_lon: -73.9,
        driver_id: Some("d-1".into()),
        proposal_id: None,
        cell: 0x1234_5678_9abc_def6,
        region: 42,
        halo: true,
        event_time: 7,
    }
}

#[test]
fn every_schema_parses_and_is_a_documented_record() {
    for (file, text) in ALL_SCHEMA_FILES {
        let schema = Schema::parse_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let Schema::Record(RecordSchema { fields, doc, .. }) = &schema else {
            panic!("{file} is not a record");
        };
        assert!(doc.is_some(), "{file} has no doc");
        for field in fields {
            assert!(
                field.doc.is_some(),
                "{file}: field {} has no doc",
                field.name
            );
        }
    }
}

#[test]
fn every_file_in_the_schemas_folder_is_compiled_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    let compiled: BTreeSet<String> = ALL_SCHEMA_FILES
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    assert_eq!(on_disk, compiled);
}

#[test]
fn every_type_mirrors_its_schema_and_round_trips() {
    let trip = |kind: &str| format!("t-{kind}");
    fn check<T: AvroRecord + PartialEq + std::fmt::Debug>(v: &T) -> &'static str {
        assert_mirrors(v);
        assert_round_trip(v);
        T::SCHEMA_FILE
    }
    let covered: BTreeSet<&str> = BTreeSet::from([
        {
            let v = location_update();
            check(&v)
        },
        {
            let v = TripRequested {
                trip_id: trip("req"),
                rider_id: "r".into(),
                product: Product::Comfort,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                dropoff_lat: Some(3.0),
                dropoff_lon: None,
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripAccepted {
                trip_id: trip("acc"),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: "d".into(),
                proposal_id: Some("t-acc#1".into()),
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripDeclined {
                trip_id: trip("dec"),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: "d".into(),
                proposal_id: None,
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripCancelled {
                trip_id: trip("can"),
                rider_id: "r".into(),
                product: Product::Premium,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: None,
                cancelled_by: CancelledBy::Rider,
                reason: Some("changed plans".into()),
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripDriverArrived {
                trip_id: trip("arr"),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: "d".into(),
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripStarted {
                trip_id: trip("sta"),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: "d".into(),
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = TripCompleted {
                trip_id: trip("com"),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                driver_id: "d".into(),
                dropoff_lat: 3.0,
                dropoff_lon: 4.0,
                distance_m: Some(1234.5),
                trip_duration_s: Some(321.0),
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = DriverProfile {
                driver_id: "d".into(),
                rating: 4.8,
                acceptance_rate: 0.93,
                products: vec![Product::Economy, Product::Xl],
                updated_at: 9,
            };
            check(&v)
        },
        {
            let v = GeoDriver {
                driver_id: "d".into(),
                lat: 1.0,
                lon: 2.0,
                accuracy_m: None,
                speed_mps: Some(3.0),
                heading_deg: None,
                status: DriverStatus::OnTrip,
                product: Product::Economy,
                cell: -5,
                region: 6,
                halo: false,
                event_time: 5,
            };
            check(&v)
        },
        {
            let v = geo_trip();
            check(&v)
        },
        {
            let v = SurgeMultiplier {
                cell: "dr5ru7".into(),
                product: Product::Economy,
                multiplier: 1.7,
                supply: 2,
                demand: 10,
                stale: false,
                window_start: 1,
                window_end: 2,
                computed_at: 3,
            };
            check(&v)
        },
        {
            let v = MatchProposal {
                proposal_id: "t#1".into(),
                trip_id: "t".into(),
                rider_id: "r".into(),
                driver_id: "d".into(),
                product: Product::Economy,
                distance_m: 812.0,
                eta_s: 131.9,
                score: 0.7,
                surge_multiplier: 1.2,
                attempt: 1,
                proposed_at: 10,
                expires_at: 15_010,
            };
            check(&v)
        },
        {
            let v = MatchUnfilled {
                trip_id: "t".into(),
                rider_id: "r".into(),
                product: Product::Economy,
                pickup_lat: 1.0,
                pickup_lon: 2.0,
                attempts: 3,
                reason: UnfilledReason::MaxAttempts,
                decided_at: 10,
            };
            check(&v)
        },
    ]);
    let all: BTreeSet<&str> = ALL_SCHEMA_FILES.iter().map(|(f, _)| *f).collect();
    assert_eq!(covered, all);
}

fn product() -> impl Strategy<Value = Product> {
    prop::sample::select(Product::ALL.to_vec())
}

fn status() -> impl Strategy<Value = DriverStatus> {
    prop::sample::select(vec![
        DriverStatus::Available,
        DriverStatus::Dispatched,
        DriverStatus::OnTrip,
        DriverStatus::Offline,
    ])
}

proptest! {
    #[test]
    fn location_updates_round_trip(
        driver_id in ".{0,40}",
        lat in -90.0f64..=90.0,
        lon in -180.0f64..=180.0,
        accuracy_m in proptest::option::of(0.0f64..1e4),
        speed_mps in proptest::option::of(any::<f64>().prop_filter("NaN never equals itself", |v| !v.is_nan())),
        heading_deg in proptest::option::of(0.0f64..360.0),
        status in status(),
        product in product(),
        event_time in any::<i64>(),
    ) {
        assert_round_trip(&LocationUpdate {
            driver_id, lat, lon, accuracy_m, speed_mps, heading_deg, status, product, event_time,
        });
    }

    /// Any byte string fed to the serde decoder yields a value or an error, never a panic.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let reader = GenericDatumReader::builder(GeoTrip::schema()).build().unwrap();
        let mut slice = bytes.as_slice();
        let _ = reader.read_deser::<GeoTrip>(&mut slice);
    }
}

/// Schema evolution under the registry's BACKWARD_TRANSITIVE rule: a new schema must read data
/// written with every earlier one.
mod evolution {
    use super::*;

    fn with_fields(base: &str, edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> Schema {
        let mut json: serde_json::Value = serde_json::from_str(base).unwrap();
        edit(json["fields"].as_array_mut().unwrap());
        Schema::parse_str(&json.to_string()).unwrap()
    }

    /// BACKWARD_TRANSITIVE: `new` reads data from every version in `history`.
    fn backward_transitive(history: &[&Schema], new: &Schema) -> bool {
        history
            .iter()
            .all(|old| SchemaCompatibility::can_read(old, new).is_ok())
    }

    /// FORWARD: old readers read data from `new`.
    fn forward(old: &Schema, new: &Schema) -> bool {
        SchemaCompatibility::can_read(new, old).is_ok()
    }

    #[test]
    fn adding_an_optional_field_with_a_default_is_backward_transitive() {
        let v1 = LocationUpdate::schema();
        let v2 = with_fields(LocationUpdate::SCHEMA_TEXT, |f| {
            f.push(serde_json::json!({"name": "battery_pct", "type": ["null", "int"], "default": null, "doc": "Battery."}))
        });
        let v3 = with_fields(LocationUpdate::SCHEMA_TEXT, |f| {
            f.push(serde_json::json!({"name": "battery_pct", "type": ["null", "int"], "default": null, "doc": "Battery."}));
            f.push(serde_json::json!({"name": "app_version", "type": "string", "default": "unknown", "doc": "App."}));
        });
        assert!(backward_transitive(&[v1], &v2));
        assert!(backward_transitive(&[v1, &v2], &v3));

        // And the Rust type of today still decodes v3 data (the writer's extra fields are
        // skipped), which is how the operators read records from newer producers.
        let mut record = apache_avro::to_value(location_update()).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut record {
            fields.push((
                "battery_pct".into(),
                apache_avro::types::Value::Union(1, Box::new(apache_avro::types::Value::Int(80))),
            ));
            fields.push((
                "app_version".into(),
                apache_avro::types::Value::String("5.1".into()),
            ));
        }
        let bytes = GenericDatumWriter::builder(&v3)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap();
        let reader = GenericDatumReader::builder(&v3).build().unwrap();
        let decoded: LocationUpdate = reader.read_deser(&mut bytes.as_slice()).unwrap();
        assert_eq!(decoded, location_update());
    }

    #[test]
    fn trip_completed_gained_its_duration_backward_transitively() {
        // The version before `trip_duration_s`.
        let v1 = with_fields(TripCompleted::SCHEMA_TEXT, |f| {
            f.retain(|field| field["name"] != "trip_duration_s")
        });
        assert!(backward_transitive(&[&v1], TripCompleted::schema()));
        // Records of producers still on it decode into today's type without a duration.
        let old = TripCompleted {
            trip_id: "t".into(),
            rider_id: "r".into(),
            product: Product::Economy,
            pickup_lat: 1.0,
            pickup_lon: 2.0,
            driver_id: "d".into(),
            dropoff_lat: 3.0,
            dropoff_lon: 4.0,
            distance_m: Some(1234.5),
            trip_duration_s: None,
            event_time: 5,
        };
        let mut record = apache_avro::to_value(old.clone()).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut record {
            fields.retain(|(name, _)| name != "trip_duration_s");
        }
        let bytes = GenericDatumWriter::builder(&v1)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap();
        let reader = GenericDatumReader::builder(&v1).build().unwrap();
        let decoded: TripCompleted = reader.read_deser(&mut bytes.as_slice()).unwrap();
        assert_eq!(decoded, old);
    }

    #[test]
    fn adding_a_required_field_without_default_is_rejected() {
        let v1 = LocationUpdate::schema();
        let v2 = with_fields(LocationUpdate::SCHEMA_TEXT, |f| {
            f.push(serde_json::json!({"name": "vehicle_id", "type": "string", "doc": "Vehicle."}))
        });
        assert!(!backward_transitive(&[v1], &v2));
    }

    #[test]
    fn removing_a_required_field_is_rejected_for_existing_readers() {
        // Avro lets a new reader ignore a field old writers still send, so dropping a field
        // passes BACKWARD; what it breaks is every reader still on the old schema, which FORWARD
        // (and so FULL_TRANSITIVE) rejects. Consumers of surgeflow outputs depend on this.
        let v1 = LocationUpdate::schema();
        let v2 = with_fields(LocationUpdate::SCHEMA_TEXT, |f| {
            f.retain(|x| x["name"] != "status")
        });
        assert!(!forward(v1, &v2));
        assert!(backward_transitive(&[v1], &v2));
    }

    #[test]
    fn changing_a_field_type_is_rejected() {
        let v1 = LocationUpdate::schema();
        let v2 = with_fields(LocationUpdate::SCHEMA_TEXT, |f| {
            for x in f.iter_mut().filter(|x| x["name"] == "lat") {
                x["type"] = serde_json::json!("string");
            }
        });
        assert!(!backward_transitive(&[v1], &v2));
    }
}
