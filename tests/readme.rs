//! The README's configuration table names every setting (so it cannot silently fall behind).

#[test]
fn readme_configuration_table_lists_every_setting() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = &readme[readme
        .find("## Configuration")
        .expect("configuration section")..];
    let settings = serde_json::to_value(innerloop::config::Settings::default()).unwrap();
    let missing: Vec<String> = settings
        .as_object()
        .unwrap()
        .keys()
        .map(|key| key.to_uppercase())
        .filter(|name| !table.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README configuration table lacks: {missing:?}"
    );
}
