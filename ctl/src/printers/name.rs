//! `-o name` and the `<kind>.<group>/<name>` form kubectl uses to name an object in
//! `apply`, `create` and `delete` output (`deployment.apps/web`, `pod/web-1`).

use serde_json::Value;
use skiff_api::resources::ResourceType;

/// The type as kubectl prints it before a name: the lower-case kind, then the group unless
/// it is the core group (`deployment.apps`, `service`).
pub fn kind_prefix(resource: &ResourceType) -> String {
    let kind = resource.kind.to_lowercase();
    if resource.group.is_empty() {
        kind
    } else {
        format!("{kind}.{}", resource.group)
    }
}

/// `deployment.apps/web`.
pub fn qualified_name(resource: &ResourceType, name: &str) -> String {
    format!("{}/{name}", kind_prefix(resource))
}

/// `-o name`: one `kind.group/name` line per object.
pub fn render(resource: &ResourceType, objects: &[Value]) -> String {
    objects
        .iter()
        .map(|object| {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            qualified_name(resource, name) + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::resources::resolve;

    #[test]
    fn core_kinds_print_without_a_group_and_others_with_theirs() {
        assert_eq!(qualified_name(resolve("po").unwrap(), "web-1"), "pod/web-1");
        assert_eq!(
            qualified_name(resolve("deploy").unwrap(), "web"),
            "deployment.apps/web"
        );
        assert_eq!(
            kind_prefix(resolve("endpointslices").unwrap()),
            "endpointslice.discovery.k8s.io"
        );
    }

    #[test]
    fn name_output_prints_one_line_per_object() {
        let objects = [
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        assert_eq!(
            render(resolve("svc").unwrap(), &objects),
            "service/a\nservice/b\n"
        );
    }
}
