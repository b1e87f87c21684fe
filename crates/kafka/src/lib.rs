//! surgeflow's connection to the outside world: Kafka clients, the schema registry and the
//! Avro wire format.
//!
//! - [`client`] builds consumers, producers and admin clients from `topology.yaml`'s connection
//!   settings, with security and exactly-once essentials set in one place;
//! - [`registry`] talks to a Confluent-compatible schema registry;
//! - [`wire`] and [`codec`] read and write Avro values in the Confluent wire format, typed and
//!   without going through generic values on hot paths, with every failure classified;
//! - [`admin`] compares a cluster with the topology and makes it match (`surgeflow topology
//!   diff | apply`).

pub mod admin;
pub mod client;
pub mod codec;
pub mod registry;
pub mod wire;

pub use client::ClientFactory;
pub use codec::{DecodeError, EncodeError, Encoder, SchemaCache};
pub use registry::{Registry, RegistryError};
