//! Tables of the configuration kinds: ConfigMaps (`DATA`), Secrets (`TYPE DATA`) and
//! ServiceAccounts (`SECRETS`). Values are never shown, only counted.

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};

use super::{RowContext, creation};
use crate::age;

/// ConfigMap columns after NAME.
pub fn configmap_headers(_wide: bool) -> Vec<&'static str> {
    vec!["DATA", "AGE"]
}

/// ConfigMap cells after NAME.
pub fn configmap_row(cm: &ConfigMap, ctx: &RowContext) -> Vec<String> {
    let entries =
        cm.data.as_ref().map_or(0, |d| d.len()) + cm.binary_data.as_ref().map_or(0, |d| d.len());
    vec![
        entries.to_string(),
        age::since(creation(&cm.metadata), ctx.now),
    ]
}

/// Secret columns after NAME.
pub fn secret_headers(_wide: bool) -> Vec<&'static str> {
    vec!["TYPE", "DATA", "AGE"]
}

/// Secret cells after NAME.
pub fn secret_row(secret: &Secret, ctx: &RowContext) -> Vec<String> {
    vec![
        secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        secret.data.as_ref().map_or(0, |d| d.len()).to_string(),
        age::since(creation(&secret.metadata), ctx.now),
    ]
}

/// ServiceAccount columns after NAME.
pub fn serviceaccount_headers(_wide: bool) -> Vec<&'static str> {
    vec!["SECRETS", "AGE"]
}

/// ServiceAccount cells after NAME.
pub fn serviceaccount_row(sa: &ServiceAccount, ctx: &RowContext) -> Vec<String> {
    vec![
        sa.secrets.as_ref().map_or(0, |s| s.len()).to_string(),
        age::since(creation(&sa.metadata), ctx.now),
    ]
}
