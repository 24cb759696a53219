//! berth's server: services over the store ([`services`]) and their HTTP edges
//! ([`http`]), plus start-up ([`serve`]).

pub mod background;
pub mod http;
pub mod leases;
pub mod memory;
pub mod metrics;
pub mod printers;
pub mod registry_events;
pub mod serve;
pub mod services;
pub mod tls;

pub use berth_upstream::ImportSettings;
pub use serve::{BlobStoreUrl, ClientConfig, ServeConfig, ServerFile, Started, run, start};
pub use services::admission::AdmissionSettings;
pub use services::audit::AuditSettings;
pub use services::classes::ClassSettings;
pub use services::delivery::DeliverySettings;
pub use services::registry::RegistrySettings;
pub use services::streams::{ImplicitCreate, StreamSettings};
