//! The Avro codec against the real schema registry and broker: typed round trips through
//! Kafka, and every kind of bad payload classified as documented.

use std::time::Duration;

use surgeflow_kafka::{DecodeError, Encoder, Registry, SchemaCache};
use surgeflow_schema::{AvroRecord, DriverStatus, LocationUpdate, Product, TripRequested};
use surgeflow_testkit::{create_topic, produce, read_committed, registry, unique_name};

fn ping(i: usize) -> LocationUpdate {
    LocationUpdate {
        driver_id: format!("driver-{i:04}"),
        lat: 40.7 + i as f64 * 1e-4,
        lon: -73.95,
        accuracy_m: Some(5.0),
        speed_mps: i.is_multiple_of(2).then_some(7.5),
        heading_deg: None,
        status: DriverStatus::Available,
        product: Product::Economy,
        event_time: 1_356_998_400_000 + i as i64 * 4000,
    }
}

#[tokio::test]
async fn typed_records_round_trip_through_kafka_and_the_registry() {
    let topic = unique_name("codec-roundtrip");
    create_topic(&topic, 3).await;
    let records: Vec<(String, LocationUpdate)> = (0..50)
        .map(|i| (format!("driver-{i:04}"), ping(i)))
        .collect();
    produce(&topic, &records).await;

    let mut back =
        read_committed::<LocationUpdate>(&topic, records.len(), Duration::from_secs(30)).await;
    back.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(back.len(), records.len());
    for (got, (key, want)) in back.iter().zip(&records) {
        assert_eq!(&got.key, key);
        assert_eq!(&got.value, want);
    }
}

#[tokio::test]
async fn encoder_registration_is_idempotent_and_ids_resolve() {
    let subject = unique_name("codec-subject") + "-value";
    let registry = registry();
    let a = Encoder::<LocationUpdate>::register(&registry, &subject)
        .await
        .unwrap();
    let b = Encoder::<LocationUpdate>::register(&registry, &subject)
        .await
        .unwrap();
    assert_eq!(a.schema_id(), b.schema_id());
    let text = registry.schema_by_id(a.schema_id()).await.unwrap();
    let parsed = apache_avro::Schema::parse_str(&text).unwrap();
    assert_eq!(
        parsed.canonical_form(),
        LocationUpdate::schema().canonical_form()
    );
}

/// A payload encoded under a freshly registered LocationUpdate schema id.
async fn valid_payload(cache: &SchemaCache) -> Vec<u8> {
    let subject = unique_name("codec-bad") + "-value";
    let encoder = Encoder::<LocationUpdate>::register(cache.registry(), &subject)
        .await
        .unwrap();
    encoder.encode(&ping(1)).unwrap()
}

#[tokio::test]
async fn every_bad_payload_kind_is_classified() {
    let cache = SchemaCache::new(registry());
    let good = valid_payload(&cache).await;
    assert_eq!(
        cache.decode::<LocationUpdate>(&good).await.unwrap(),
        ping(1)
    );

    let bad_magic = [&[1u8][..], &good[1..]].concat();
    let err = cache
        .decode::<LocationUpdate>(&bad_magic)
        .await
        .unwrap_err();
    assert!(matches!(err, DecodeError::BadMagic { found: 1 }), "{err}");
    let err = cache
        .decode::<LocationUpdate>(b"{\"driver_id\":\"json\"}")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::BadMagic { found: b'{' }),
        "{err}"
    );

    let err = cache
        .decode::<LocationUpdate>(&good[..3])
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated { part: "header", .. }),
        "{err}"
    );
    let err = cache
        .decode::<LocationUpdate>(&good[..good.len() - 3])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                part: "Avro body",
                ..
            }
        ),
        "{err}"
    );

    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
    let err = cache.decode::<LocationUpdate>(&unknown).await.unwrap_err();
    assert!(
        matches!(err, DecodeError::UnknownSchemaId { id: 0x7FFF_FFF0 }),
        "{err}"
    );
    assert!(!err.is_retriable());

    let err = cache
        .decode::<LocationUpdate>(&[&good[..], &[0, 0]].concat())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::TrailingBytes { extra: 2, .. }),
        "{err}"
    );

    // A string length prefix claiming 2^62 bytes: refused, not allocated.
    let mut huge = good[..5].to_vec();
    huge.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let err = cache.decode::<LocationUpdate>(&huge).await.unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed { .. } | DecodeError::Truncated { .. }
        ),
        "{err}"
    );

    // A record of another type on the wrong topic.
    let subject = unique_name("codec-other") + "-value";
    let other = Encoder::<TripRequested>::register(cache.registry(), &subject)
        .await
        .unwrap();
    let request = TripRequested {
        trip_id: "t".into(),
        rider_id: "r".into(),
        product: Product::Xl,
        pickup_lat: 1.0,
        pickup_lon: 2.0,
        dropoff_lat: None,
        dropoff_lon: None,
        event_time: 3,
    };
    let err = cache
        .decode::<LocationUpdate>(&other.encode(&request).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::IncompatibleSchema { .. }),
        "{err}"
    );
    assert_eq!(err.reason(), "incompatible_schema");
}

#[tokio::test]
async fn random_payloads_never_panic() {
    let cache = SchemaCache::new(registry());
    let good = valid_payload(&cache).await;
    // Deterministic pseudo-random mutations of a valid payload: every outcome is a value or a
    // classified error.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = 5 + (state as usize) % (bytes.len() - 5);
            bytes[i] = (state >> 32) as u8;
        }
        let cut = 5 + (state as usize >> 8) % (bytes.len() - 4);
        let _ = cache
            .decode::<LocationUpdate>(&bytes[..cut.min(bytes.len())])
            .await;
    }
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retriable_error() {
    let conn: surgeflow_topology::RegistryConnection =
        registry_at("http://127.0.0.1:1/apis/ccompat/v7");
    let cache = SchemaCache::new(Registry::from_topology(&conn).unwrap());
    let err = cache
        .decode::<LocationUpdate>(&[0, 0, 0, 0, 1, 2])
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::RegistryUnavailable { id: 1, .. }),
        "{err}"
    );
    assert!(err.is_retriable());
}

/// The test topology's registry settings pointed at another URL.
fn registry_at(url: &str) -> surgeflow_topology::RegistryConnection {
    let mut conn = surgeflow_testkit::topology().connection.registry;
    conn.url = url.to_string();
    conn.timeout_ms = 1000;
    conn
}
