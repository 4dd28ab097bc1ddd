//! `SEALCAMD_` environment variables that override fields of the config file.

/// The prefix of environment overrides: `SEALCAMD_CAMERA__WIDTH=640` sets
/// `width` in `[camera]`, `SEALCAMD_DEVICE_ID=cam7` the top-level
/// `device_id`. Levels are separated by a double underscore; names are
/// lowercased. A value is read as a TOML value when it is one (`640`,
/// `true`, `["a.pub"]`) and as a string otherwise.
pub const ENV_PREFIX: &str = "SEALCAMD_";

/// Applies the `SEALCAMD_` variables among `env` to `table`, returning
/// their names in order.
pub(super) fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, String> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, value) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "{var}: write SEALCAMD_SECTION__KEY (for example SEALCAMD_CAMERA__WIDTH)"
            ));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let (key, sections) = path.split_last().ok_or_else(|| format!("{var}: no key"))?;
        let mut at = &mut *table;
        for section in sections {
            let entry = at
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                format!("{var}: {section} is a value in the config, not a section")
            })?;
        }
        at.insert(key.clone(), parsed);
        applied.push(var);
    }
    Ok(applied)
}
