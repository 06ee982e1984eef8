//! The Velero server's command line, as the Deployment running `velero server` holds
//! it. pflag accepts `--flag value` and `--flag=value`, and the last one given wins;
//! this is the one reader and writer of those flags.

use std::collections::BTreeMap;

use serde_json::Value;

/// The Velero Deployment's server container.
pub const CONTAINER: &str = "velero";
/// provider:name pairs of the default snapshot location per provider.
pub const DEFAULT_VSL_FLAG: &str = "--default-volume-snapshot-locations";
/// The location the server makes the default at every start.
pub const DEFAULT_BSL_FLAG: &str = "--default-backup-storage-location";
/// Velero's own value for [`DEFAULT_BSL_FLAG`].
pub const DEFAULT_BSL: &str = "default";

/// The server container's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs(Vec<String>);

impl ServerArgs {
    pub fn new(args: Vec<String>) -> ServerArgs {
        ServerArgs(args)
    }

    /// The server container's args in a Deployment's manifest; `None` when it has no
    /// container named [`CONTAINER`].
    pub fn of_deployment(manifest: &Value) -> Option<ServerArgs> {
        let containers = manifest
            .pointer("/spec/template/spec/containers")?
            .as_array()?;
        let container = containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(CONTAINER))?;
        let args = container
            .get("args")
            .and_then(Value::as_array)
            .map(|args| {
                args.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Some(ServerArgs(args))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// The value `flag` is given, in either form; the last one wins, as in pflag.
    pub fn value(&self, flag: &str) -> Option<&str> {
        let mut found = None;
        let mut args = self.0.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                found = args.next().map(String::as_str);
            } else if let Some(value) = arg
                .strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
            {
                found = Some(value);
            }
        }
        found
    }

    /// The same arguments with `flag` given once as `--flag=value` at the end, or not at
    /// all when `value` is `None`.
    pub fn with(&self, flag: &str, value: Option<&str>) -> ServerArgs {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut args = self.0.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                args.next();
                continue;
            }
            if arg
                .strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
            {
                continue;
            }
            out.push(arg.clone());
        }
        if let Some(value) = value {
            out.push(format!("{flag}={value}"));
        }
        ServerArgs(out)
    }

    /// [`DEFAULT_VSL_FLAG`] as provider → snapshot location.
    pub fn default_snapshot_locations(&self) -> BTreeMap<String, String> {
        self.value(DEFAULT_VSL_FLAG)
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(|pair| pair.split_once(':'))
            .map(|(provider, vsl)| (provider.to_string(), vsl.to_string()))
            .collect()
    }

    /// The location the server makes the default at each start ("" turns that off).
    pub fn default_backup_location(&self) -> &str {
        self.value(DEFAULT_BSL_FLAG).unwrap_or(DEFAULT_BSL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServerArgs {
        ServerArgs::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn reads_both_forms_and_the_last_wins() {
        let both = args(&[
            "server",
            "--default-volume-snapshot-locations",
            "aws:one",
            "--default-volume-snapshot-locations=aws:two,gcp:three",
        ]);
        assert_eq!(
            both.value(DEFAULT_VSL_FLAG),
            Some("aws:two,gcp:three"),
            "the later --flag=value wins"
        );
        let spaced = args(&["server", "--default-backup-storage-location", "primary"]);
        assert_eq!(spaced.default_backup_location(), "primary");
        assert_eq!(args(&["server"]).default_backup_location(), "default");
        let map = both.default_snapshot_locations();
        assert_eq!(map.get("gcp").map(String::as_str), Some("three"));
        // A flag that only shares a prefix is another flag.
        let other = args(&["--default-volume-snapshot-locations-extra=x"]);
        assert_eq!(other.value(DEFAULT_VSL_FLAG), None);
    }

    #[test]
    fn writes_one_flag_in_place_of_every_form() {
        let before = args(&[
            "server",
            "--default-volume-snapshot-locations",
            "aws:one",
            "--uploader-type=kopia",
            "--default-volume-snapshot-locations=aws:two",
        ]);
        let after = before.with(DEFAULT_VSL_FLAG, Some("aws:three"));
        assert_eq!(
            after.as_slice(),
            [
                "server",
                "--uploader-type=kopia",
                "--default-volume-snapshot-locations=aws:three"
            ]
        );
        let removed = before.with(DEFAULT_VSL_FLAG, None);
        assert_eq!(removed.as_slice(), ["server", "--uploader-type=kopia"]);
    }
}
