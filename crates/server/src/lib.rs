//! berth's server: services over the store ([`services`]) and their HTTP edges
//! ([`http`]), plus start-up ([`serve`]).

pub mod http;
pub mod serve;
pub mod services;

pub use serve::{ClientConfig, ServeConfig, Started, run, start};
