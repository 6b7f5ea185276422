//! Resource types, parsing, validation and schema.
//!
//! Pure: nothing here touches etcd or Docker. The typed forms (`ParsedRole`, `ParsedAccessory`,
//! `RolloutPolicy`, `ImageRef`, `Endpoint`) are made by the parsers validation runs, and they are
//! what the planner and the engine use, so what validates is exactly what runs.
pub mod applyset;
pub mod endpoint;
pub mod error;
pub mod image;
pub mod kind;
pub mod network;
pub mod options;
pub mod parse;
pub mod ports;
pub mod proxy;
pub mod relations;
pub mod schema;
pub mod secret;
pub mod typed;
pub mod types;
pub mod validate;
pub mod values;
pub mod volumes;

pub use endpoint::{parse_endpoint, Endpoint};
pub use error::{SpecError, SpecErrors};
pub use image::{parse_image, ImageRef};
pub use kind::Kind;
pub use network::{pool_warnings, AddressPool, PoolExhausted, Subnet};
pub use options::{
    ContainerOptions, Device, Directory, ExtraHost, HostAddress, Logging, RunOptions, Ulimit, UlimitValue,
};
pub use parse::{load_paths, load_sources, parse_str, Loaded};
pub use ports::{parse_port, PortMapping, Protocol};
pub use proxy::{route_claims, HostProxy, ParsedProxy, ProxySettings, RoleProxy, RouteClaim, TlsMode};
pub use relations::{accessory_hosts, app_uses_host, endpoint_twins, hosts_of, secrets_used, HasMeta};
pub use schema::{crd_value, crd_yaml, openapi_schema};
pub use secret::{validate_secret, EnvValue, FileSource, Secret, SecretKeyRef, SecretType, SecretValue};
pub use typed::{
    FieldError, ParsedAccessory, ParsedHealthcheck, ParsedRole, ParsedWorkload, RoleLimits, RolloutPolicy, ValidApp,
};
pub use types::*;
pub use validate::{published_ports, validate, validate_against_store, validate_app, Problem, PublishedPort};
pub use values::{
    check_dns_label, check_env_key, check_max_unavailable, max_unavailable, parse_duration, parse_memory,
    parse_percent, parse_restart, MaxUnavailable, RestartPolicy,
};
pub use volumes::{parse_volume, VolumeMount};
