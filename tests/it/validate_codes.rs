//! Every offline diagnostic code of product.md, raised by a bad file at the right line
//! and column; and a file with N independent mistakes yields N diagnostics.

use stowage::diagnostic::{Code, Severity};

use crate::support::{Found, diagnose, fixture};

const AWS_INI: &str =
    "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = CANARY-SECRET-9f2c\n";

struct Case {
    code: Code,
    file: &'static str,
    text: &'static str,
    extra: &'static [(&'static str, &'static str)],
}

/// Each file holds exactly one mistake, at each marker, of `code`.
const CASES: &[Case] = &[
    Case {
        code: Code::Parse,
        file: "stowage.toml",
        text: "version = 1\n\n[backup_locations.a⟨\nprovider = \"aws\"\n",
        extra: &[],
    },
    Case {
        code: Code::Parse,
        file: "stowage.yaml",
        text: "version: 1\nbackup_locations:\n  a:\n    provider: ⟨[aws\n",
        extra: &[],
    },
    Case {
        code: Code::Parse,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = ⟨\"yes\"\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::Parse,
        file: "stowage.yaml",
        text: "version: 1\nbackup_locations:\n  a:\n    provider: aws\n    bucket: bucket-b\n    default: true\n    access_mode: ⟨ReadWriteOnce\n    config: {region: r}\n",
        extra: &[],
    },
    Case {
        code: Code::UnknownKey,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\n⟨prefx = \"p\"\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::UnknownKey,
        file: "stowage.yaml",
        text: "version: 1\n⟨schedule:\n  daily:\n    cron: '@daily'\n",
        extra: &[],
    },
    Case {
        code: Code::Version,
        file: "stowage.toml",
        text: "⟨[velero]\nnamespace = \"velero\"\n",
        extra: &[],
    },
    Case {
        code: Code::Version,
        file: "stowage.yaml",
        text: "version: ⟨2\n",
        extra: &[],
    },
    Case {
        code: Code::Reference,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = ⟨\"primray\"\nconfig = { region = \"r\" }\n[credentials.primary]\nexternal = true\n",
        extra: &[],
    },
    Case {
        code: Code::Reference,
        file: "stowage.toml",
        text: "version = 1\n[schedules.daily]\ncron = \"@daily\"\nstorage_locations = [⟨\"nowhere\"]\n",
        extra: &[],
    },
    Case {
        code: Code::DefaultLocation,
        file: "stowage.toml",
        text: "version = 1\n[⟨backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\nconfig = { region = \"r\" }\n[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::DefaultLocation,
        file: "stowage.yaml",
        text: "version: 1\nbackup_locations:\n  a: {provider: aws, bucket: bucket-a, default: true, config: {region: r}}\n  b: {provider: aws, bucket: bucket-b, default: ⟨true, config: {region: r}}\n",
        extra: &[],
    },
    Case {
        code: Code::VslPerProvider,
        file: "stowage.toml",
        text: "version = 1\n[snapshot_locations.east]\nprovider = \"aws\"\nconfig = { region = \"us-east-1\" }\n[snapshot_locations.west]\nprovider = \"aws\"\nconfig = { region = \"us-west-1\" }\n[schedules.daily]\ncron = \"@daily\"\nvolume_snapshot_locations = [\"east\", ⟨\"west\"]\n",
        extra: &[],
    },
    Case {
        code: Code::VslAmbiguous,
        file: "stowage.toml",
        text: "version = 1\n[snapshot_locations.px-local]\nprovider = \"portworx.io/portworx\"\nconfig = { type = \"local\" }\n[snapshot_locations.px-cloud]\nprovider = \"portworx.io/portworx\"\nconfig = { type = \"cloud\", credId = \"c\" }\n[schedules.⟨daily]\ncron = \"@daily\"\n",
        extra: &[],
    },
    Case {
        // The server default is keyed "portworx", but the VSL says portworx.io/portworx:
        // Velero compares them as written, so the default would never apply.
        code: Code::Reference,
        file: "stowage.toml",
        text: "version = 1\n[velero.default_volume_snapshot_locations]\n⟨portworx = \"px-local\"\n[snapshot_locations.px-local]\nprovider = \"portworx.io/portworx\"\n[schedules.daily]\ncron = \"@daily\"\n",
        extra: &[],
    },
    Case {
        code: Code::PrefixOverlap,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"shared\"\nprefix = \"cluster\"\ndefault = true\nconfig = { region = \"r\" }\n[backup_locations.b]\nprovider = \"aws\"\nbucket = \"shared\"\nprefix = ⟨\"cluster/b\"\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::Bucket,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = ⟨\"velero/cluster-a\"\ndefault = true\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::Duration,
        file: "stowage.toml",
        text: "version = 1\n[schedules.daily]\ncron = \"@daily\"\nttl = ⟨\"30d\"\n",
        extra: &[],
    },
    Case {
        code: Code::Duration,
        file: "stowage.yaml",
        text: "version: 1\nbackup_locations:\n  a:\n    provider: aws\n    bucket: bucket-b\n    default: true\n    validation_frequency: ⟨1w\n    config: {region: r}\n",
        extra: &[],
    },
    Case {
        code: Code::Cron,
        file: "stowage.toml",
        text: "version = 1\n[schedules.weekly]\ncron = ⟨\"0 1 * * 7\"\n",
        extra: &[],
    },
    // Accepted silently before: an interval of zero, a date that never comes, a
    // negative retention.
    Case {
        code: Code::Cron,
        file: "stowage.toml",
        text: "version = 1\n[schedules.spin]\ncron = ⟨\"@every 0s\"\n",
        extra: &[],
    },
    Case {
        code: Code::Cron,
        file: "stowage.toml",
        text: "version = 1\n[schedules.never]\ncron = ⟨\"0 0 31 2 *\"\n",
        extra: &[],
    },
    Case {
        code: Code::Duration,
        file: "stowage.toml",
        text: "version = 1\n[schedules.daily]\ncron = \"@daily\"\nttl = ⟨\"-24h\"\n",
        extra: &[],
    },
    Case {
        code: Code::Cron,
        file: "stowage.yaml",
        text: "version: 1\nschedules:\n  hourly:\n    cron: ⟨\"0 0 * * * *\"\n",
        extra: &[],
    },
    Case {
        code: Code::Name,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.⟨Primary]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        code: Code::Extends,
        file: "stowage.toml",
        text: "version = 1\nextends = ⟨\"nowhere.toml\"\n",
        extra: &[],
    },
    Case {
        // SOPS metadata without its `lastmodified`: malformed, whatever the keys.
        code: Code::Sops,
        file: "stowage.toml",
        text: "version = 1\n[credentials.aws]\nfile = ⟨\"aws.ini\"\n",
        extra: &[(
            "aws.ini",
            "[default]\naws_access_key_id = ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n\n[sops]\nmac = ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\nversion = 3.13.3\n",
        )],
    },
    Case {
        code: Code::Stagger,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\nconfig = { region = \"r\" }\n[schedules.daily]\ncron = \"0,30 1 * * *\"\nstorage_locations = [\"a\", \"b\"]\nstagger = ⟨\"10m\"\n",
        extra: &[],
    },
    Case {
        // A daily backup cannot keep the newest restorable copy under an hour old.
        code: Code::Rpo,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.daily]\ncron = \"0 1 * * *\"\nrpo = ⟨\"1h\"\n",
        extra: &[],
    },
    Case {
        // Restoring with no prefix would write into the namespaces backed up.
        code: Code::DrillScope,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.daily]\ncron = \"0 1 * * *\"\nincluded_namespaces = [\"shop\"]\n[schedules.daily.drill]\ncron = \"0 6 * * 0\"\nnamespace_prefix = ⟨\"\"\n",
        extra: &[],
    },
    Case {
        // A mapped name over 63 characters.
        code: Code::DrillScope,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.daily]\ncron = \"0 1 * * *\"\nincluded_namespaces = [\"a-namespace-whose-name-is-exactly-fifty-six-characters-x\"]\n[schedules.daily.drill]\ncron = \"0 6 * * 0\"\nnamespace_prefix = ⟨\"restore-\"\n",
        extra: &[],
    },
    Case {
        // caCertRef arrived in Velero 1.18; 1.17 drops it.
        code: Code::VeleroVersion,
        file: "stowage.toml",
        text: "version = 1\n[velero]\nversion = \"1.17\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\n⟨ca_cert_ref = { secret = \"ca\", key = \"ca.pem\" }\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        // Not a version at all.
        code: Code::VeleroVersion,
        file: "stowage.yaml",
        text: "version: 1\nvelero:\n  version: ⟨latest\nbackup_locations:\n  a:\n    provider: aws\n    bucket: bucket-a\n    default: true\n    config: {region: r}\n",
        extra: &[],
    },
    Case {
        // Velero 1.17 names the kopia repository <namespace>-<location>-kopia, and fails
        // its maintenance over 63 characters.
        code: Code::VeleroVersion,
        file: "stowage.toml",
        text: "version = 1\n[velero]\nversion = \"1.17.2\"\n[backup_locations.⟨a-location-name-long-enough-to-overflow-the-repository-name]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n",
        extra: &[],
    },
    Case {
        // Reported once, at the entry: not again for the Velero Schedule named after it.
        code: Code::Name,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.primary]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.⟨Nightly_Backup]\ncron = \"@daily\"\n",
        extra: &[],
    },
    Case {
        // 31 + 1 + 32 = 64 characters once fanned out.
        code: Code::Name,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.location-with-a-thirty-two-chr-name]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.schedule-whose-name-is-31-chars]\ncron = \"@daily\"\nstorage_locations = [⟨\"location-with-a-thirty-two-chr-name\"]\n",
        extra: &[],
    },
    Case {
        code: Code::NameCollision,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n[schedules.a]\ncron = \"@daily\"\nstorage_locations = [\"b\"]\n[schedules.⟨a-b]\ncron = \"@hourly\"\n",
        extra: &[],
    },
    Case {
        code: Code::NameCollision,
        file: "stowage.toml",
        text: "version = 1\n[credentials.one]\nsecret = \"creds\"\nkey = \"cloud\"\nexternal = true\n[credentials.⟨two]\nsecret = \"creds\"\nexternal = true\n",
        extra: &[],
    },
    Case {
        code: Code::ProviderConfig,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { ⟨regoin = \"us-east-1\" }\n",
        extra: &[],
    },
    Case {
        code: Code::ProviderConfig,
        file: "stowage.toml",
        text: "version = 1\n[snapshot_locations.⟨ebs]\nprovider = \"aws\"\n",
        extra: &[],
    },
    Case {
        code: Code::CredentialSource,
        file: "stowage.toml",
        text: "version = 1\n[credentials.primary]\nfile = \"aws.ini\"\n⟨env = \"AWS_CREDENTIALS\"\n",
        extra: &[("aws.ini", AWS_INI)],
    },
    Case {
        code: Code::CredentialSource,
        file: "stowage.toml",
        text: "version = 1\n[credentials.primary]\nfile = ⟨\"missing/aws.ini\"\n",
        extra: &[],
    },
    Case {
        code: Code::CredentialFormat,
        file: "stowage.toml",
        text: "version = 1\n[credentials.primary]\nfile = ⟨\"aws.ini\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = \"primary\"\nconfig = { region = \"r\", profile = \"backup\" }\n",
        extra: &[("aws.ini", AWS_INI)],
    },
    Case {
        code: Code::CaCert,
        file: "stowage.toml",
        text: "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nca_cert_file = \"ca.pem\"\n⟨ca_cert_ref = { secret = \"ca\", key = \"ca.pem\" }\nconfig = { region = \"r\" }\n",
        extra: &[(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )],
    },
    Case {
        code: Code::BackupFilter,
        file: "stowage.toml",
        text: "version = 1\n[schedules.daily]\ncron = \"@daily\"\nexcluded_namespaces = [⟨\"*\"]\n",
        extra: &[],
    },
    Case {
        code: Code::BackupFilter,
        file: "stowage.toml",
        text: "version = 1\n[schedules.daily]\ncron = \"@daily\"\nincluded_resources = [\"pods\"]\n⟨included_namespace_scoped_resources = [\"deployments\"]\n",
        extra: &[],
    },
];

fn positions(found: &[Found]) -> Vec<(Code, usize, usize)> {
    found.iter().map(|f| (f.code, f.line, f.column)).collect()
}

#[test]
fn each_offline_code_is_raised_at_its_place() {
    for (index, case) in CASES.iter().enumerate() {
        let fixture = fixture(case.file, case.text, case.extra);
        let found = diagnose(&fixture.path);
        let expected: Vec<(Code, usize, usize)> = fixture
            .marks
            .iter()
            .map(|&(line, column)| (case.code, line, column))
            .collect();
        assert!(!expected.is_empty(), "case {index} has no marker");
        assert_eq!(
            positions(&found),
            expected,
            "case {index} ({}):\n{}\nfound: {found:#?}",
            case.code,
            case.text
        );
        for f in &found {
            assert!(
                !f.message.is_empty() && !f.message.ends_with('.'),
                "case {index}: {f:?}"
            );
        }
    }
}

#[test]
fn every_offline_code_has_a_case() {
    // `stowage::file` is about the file itself, not its text: cli.rs covers it.
    // `stowage::plaintext-credential` needs a git work tree: sops.rs makes one.
    for code in Code::ALL
        .into_iter()
        .filter(|code| !code.is_live() && !matches!(code, Code::File | Code::PlaintextCredential))
    {
        assert!(
            CASES.iter().any(|case| case.code == code),
            "{code} is raised by no test file"
        );
    }
}

#[test]
fn hints_name_the_fix() {
    let fixture = fixture(
        "stowage.toml",
        "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbukcet = \"b\"\n",
        &[],
    );
    let found = diagnose(&fixture.path);
    let unknown = found
        .iter()
        .find(|f| f.code == Code::UnknownKey)
        .expect("unknown key");
    assert_eq!(unknown.help.as_deref(), Some("did you mean `bucket`?"));
    // The misspelt key also leaves `bucket` missing: reported, not hidden.
    assert!(
        found
            .iter()
            .any(|f| f.code == Code::Parse && f.message.contains("`bucket`"))
    );
}

#[test]
fn n_independent_mistakes_give_n_diagnostics() {
    let text = "\
version = 1

[credentials.primary]
file = \"aws.ini\"

[backup_locations.primary]
provider = \"aws\"
bucket = ⟨\"velero/backups\"
default = true
credential = ⟨\"primray\"
⟨acces_mode = \"ReadOnly\"
config = { region = \"us-east-1\", s3ForcePathStyle = ⟨\"yes\" }

[backup_locations.secondary]
provider = \"aws\"
bucket = \"velero-dr\"
backup_sync_period = ⟨\"30d\"
config = { region = \"us-west-2\" }

[schedules.daily]
cron = ⟨\"0 1 * * 7\"
storage_locations = [\"primary\", ⟨\"tertiary\"]
ttl = ⟨\"1w\"
excluded_namespaces = [⟨\"*\"]
";
    let fixture = fixture("stowage.toml", text, &[("aws.ini", AWS_INI)]);
    let found = diagnose(&fixture.path);
    assert_eq!(
        positions(&found),
        vec![
            (Code::Bucket, 8, 10),
            (Code::Reference, 10, 14),
            (Code::UnknownKey, 11, 1),
            (Code::ProviderConfig, 12, 53),
            (Code::Duration, 17, 22),
            (Code::Cron, 21, 8),
            (Code::Reference, 22, 33),
            (Code::Duration, 23, 7),
            (Code::BackupFilter, 24, 24),
        ],
        "{found:#?}"
    );
    let marks: Vec<(usize, usize)> = found.iter().map(|f| (f.line, f.column)).collect();
    assert_eq!(marks, fixture.marks);
    assert!(found.iter().all(|f| f.severity == Severity::Error));
}

#[test]
fn toml_and_yaml_report_the_same_mistakes() {
    let toml = fixture(
        "stowage.toml",
        "version = 1\n[schedules.daily]\ncron = ⟨\"@weekdays\"\nttl = ⟨\"2d\"\n",
        &[],
    );
    let yaml = fixture(
        "stowage.yaml",
        "version: 1\nschedules:\n  daily:\n    cron: ⟨\"@weekdays\"\n    ttl: ⟨2d\n",
        &[],
    );
    let codes = |path| -> Vec<(Code, String)> {
        diagnose(path)
            .into_iter()
            .map(|f| (f.code, f.message))
            .collect()
    };
    assert_eq!(codes(&toml.path), codes(&yaml.path));
    let yaml_found = diagnose(&yaml.path);
    assert_eq!(
        yaml_found
            .iter()
            .map(|f| (f.line, f.column))
            .collect::<Vec<_>>(),
        yaml.marks
    );
}

#[test]
fn credential_problems_never_show_the_secret() {
    let canary = "CANARY-SECRET-9f2c";
    let broken_ini = format!("[default\naws_secret_access_key = {canary}\n");
    let broken_env = format!("AZURE_SUBSCRIPTION_ID=s\n{canary}\n");
    let broken_json = format!("{{\"type\": \"service_account\", \"private_key\": \"{canary}\"");
    let text = "version = 1\n\
[credentials.aws]\nfile = \"aws.ini\"\n\
[credentials.azure]\nfile = \"azure.env\"\n\
[credentials.gcp]\nfile = \"gcp.json\"\n\
[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\ncredential = \"aws\"\nconfig = { region = \"r\" }\n\
[backup_locations.b]\nprovider = \"azure\"\nbucket = \"bucket-b\"\ncredential = \"azure\"\nconfig = { storageAccount = \"s\", resourceGroup = \"g\" }\n\
[backup_locations.c]\nprovider = \"gcp\"\nbucket = \"bucket-c\"\ncredential = \"gcp\"\n";
    let fixture = fixture(
        "stowage.toml",
        text,
        &[
            ("aws.ini", &broken_ini),
            ("azure.env", &broken_env),
            ("gcp.json", &broken_json),
        ],
    );
    let found = diagnose(&fixture.path);
    let formats = found
        .iter()
        .filter(|f| f.code == Code::CredentialFormat)
        .count();
    assert_eq!(formats, 3, "{found:#?}");
    let everything = format!("{found:?}");
    assert!(!everything.contains(canary), "{everything}");
}

#[test]
fn provider_limits_sizes_and_huge_numbers_are_located_errors() {
    // Bucket names the provider refuses.
    let text = "version = 1\n\
[backup_locations.a]\nprovider = \"aws\"\nbucket = \"My_Bucket\"\ndefault = true\nconfig = { region = \"r\" }\n\
[backup_locations.b]\nprovider = \"azure\"\nbucket = \"velero--backups\"\nconfig = { storageAccount = \"s\", resourceGroup = \"g\" }\n\
[backup_locations.c]\nprovider = \"gcp\"\nbucket = \"ab\"\n\
[backup_locations.d]\nprovider = \"aws\"\nbucket = \"Any_Name\"\nconfig = { region = \"r\", s3Url = \"http://minio:9000\" }\n";
    let files = fixture("stowage.toml", text, &[]);
    let found = diagnose(&files.path);
    let buckets: Vec<(usize, &str)> = found
        .iter()
        .filter(|f| f.code == Code::Bucket)
        .map(|f| (f.line, f.message.as_str()))
        .collect();
    assert_eq!(
        buckets.len(),
        3,
        "an S3-compatible endpoint keeps its names: {found:#?}"
    );
    assert_eq!(buckets[0].0, 4);
    assert!(
        buckets[0].1.contains("S3 bucket names are 3-63"),
        "{buckets:?}"
    );
    assert!(buckets[1].1.contains("without '--'"), "{buckets:?}");
    assert!(buckets[2].1.contains("Cloud Storage"), "{buckets:?}");

    // A version past any integer says so, not "found a string".
    let files = fixture("stowage.toml", "version = 99999999999999999999\n", &[]);
    let found = diagnose(&files.path);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].message,
        "expected an integer, found an integer too large to read"
    );

    // Credentials sharing a Secret that together pass a Secret's 1 MiB.
    let big = format!(
        "[default]\naws_access_key_id = A\naws_secret_access_key = B\n{}",
        "# padding\n".repeat(60_000)
    );
    let text = "version = 1\n\
[credentials.one]\nfile = \"one.ini\"\nsecret = \"shared\"\nkey = \"one\"\n\
[credentials.two]\nfile = \"two.ini\"\nsecret = \"shared\"\nkey = \"two\"\n\
[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\ncredential = \"one\"\nconfig = { region = \"r\" }\n\
[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ncredential = \"two\"\nconfig = { region = \"r\" }\n";
    let files = fixture(
        "stowage.toml",
        text,
        &[("one.ini", &big), ("two.ini", &big)],
    );
    let found = diagnose(&files.path);
    let sizes: Vec<&crate::support::Found> = found
        .iter()
        .filter(|f| f.message.contains("a Secret holds at most 1 MiB"))
        .collect();
    assert_eq!(sizes.len(), 1, "{found:#?}");
    assert_eq!(sizes[0].code, Code::CredentialSource);
    assert!(
        sizes[0].message.contains("Secret `shared` would hold"),
        "{sizes:?}"
    );
    assert!(sizes[0].line > 0);

    // An environment variable past 1 MiB is refused when read (exec cannot pass one
    // that large on Linux, so the loader is called with its environment).
    let loaded = stowage::config::load::parse_str(
        "stowage.toml",
        "version = 1\n[credentials.env]\nenv = \"HUGE\"\n".to_string(),
        stowage::config::source::Format::Toml,
    );
    let config = loaded.config.expect("a model");
    let huge = std::ffi::OsString::from("x".repeat((1 << 20) + 1));
    let materials =
        stowage::config::load::read_materials(&config, std::path::Path::new("."), &|_| {
            Some(huge.clone())
        });
    match &materials.credentials["env"] {
        stowage::config::load::Material::Missing(reason) => {
            assert!(reason.contains("a Secret holds at most 1 MiB"), "{reason}")
        }
        other => panic!("read: {other:?}"),
    }
}

#[test]
fn staggered_copies_render_exact_crons_and_every_refusal_is_located_at_stagger() {
    let locations = "version = 1\n\
[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n\
[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\nconfig = { region = \"r\" }\n\
[backup_locations.c]\nprovider = \"aws\"\nbucket = \"bucket-c\"\nconfig = { region = \"r\" }\n";
    let with = |schedule: &str| format!("{locations}[schedules.nightly]\n{schedule}");
    // Three copies of 0 1 * * *, 20 minutes apart.
    let files = fixture(
        "stowage.toml",
        &with(
            "cron = \"0 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"20m\"\n",
        ),
        &[],
    );
    assert!(
        diagnose(&files.path).is_empty(),
        "{:#?}",
        diagnose(&files.path)
    );
    let loaded = stowage::config::load::load(&files.path).unwrap();
    let desired = stowage::render::render(loaded.config.as_ref().unwrap(), &loaded.materials);
    let crons: Vec<(String, String)> = desired
        .objects
        .iter()
        .filter(|o| o.object.kind == stowage::velero::Kind::Schedule)
        .map(|o| {
            (
                o.object.name.clone(),
                o.manifest.as_schedule().unwrap().spec.schedule.clone(),
            )
        })
        .collect();
    assert_eq!(
        crons,
        [
            ("nightly-a".to_string(), "0 1 * * *".to_string()),
            ("nightly-b".to_string(), "20 1 * * *".to_string()),
            ("nightly-c".to_string(), "40 1 * * *".to_string()),
        ]
    );
    // Each refusal, located at the stagger key (line 18 of these files).
    let refused = [
        (
            "cron = \"0 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"0s\"\n",
            "longer than zero",
        ),
        (
            "cron = \"@every 6h\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"20m\"\n",
            "@every",
        ),
        (
            "cron = \"0,30 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"20m\"\n",
            "not a single value",
        ),
        (
            "cron = \"0 23 * * 1\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"40m\"\n",
            "next day",
        ),
        (
            "cron = \"0 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"12h\"\n",
            "at or after its next run",
        ),
        (
            "cron = \"0 * * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"30m\"\n",
            "would overlap the next run",
        ),
        (
            "cron = \"0 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nstagger = \"90s\"\n",
            "whole minutes",
        ),
        (
            "cron = \"0 1 * * *\"\nstorage_location = \"a\"\nstagger = \"20m\"\n",
            "no copies to stagger",
        ),
    ];
    for (schedule, why) in refused {
        let files = fixture("stowage.toml", &with(schedule), &[]);
        let found = diagnose(&files.path);
        assert_eq!(found.len(), 1, "{schedule}: {found:#?}");
        assert_eq!(found[0].code, Code::Stagger, "{schedule}: {found:#?}");
        assert_eq!(found[0].line, 18, "{schedule}: {found:#?}");
        assert!(
            found[0].message.contains(why),
            "{schedule}: {}",
            found[0].message
        );
    }
}

#[test]
fn a_copy_keeps_its_own_ttl_and_stagger_and_every_copy_table_mistake_is_located() {
    let locations = "version = 1\n\
[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"r\" }\n\
[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-b\"\nconfig = { region = \"r\" }\n\
[backup_locations.c]\nprovider = \"aws\"\nbucket = \"bucket-c\"\nconfig = { region = \"r\" }\n\
[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nttl = \"720h\"\nstagger = \"20m\"\n";
    // Copy c: kept three times as long, two hours after the cron's time; b keeps its
    // place (1 × 20m).
    let files = fixture(
        "stowage.toml",
        &format!("{locations}[schedules.nightly.copy.c]\nttl = \"2160h\"\nstagger = \"2h\"\n"),
        &[],
    );
    assert!(
        diagnose(&files.path).is_empty(),
        "{:#?}",
        diagnose(&files.path)
    );
    let loaded = stowage::config::load::load(&files.path).unwrap();
    let desired = stowage::render::render(loaded.config.as_ref().unwrap(), &loaded.materials);
    let schedules: Vec<(String, String, String)> = desired
        .objects
        .iter()
        .filter(|o| o.object.kind == stowage::velero::Kind::Schedule)
        .map(|o| {
            let spec = &o.manifest.spec_value();
            (
                o.object.name.clone(),
                spec["schedule"].as_str().unwrap().to_string(),
                spec["template"]["ttl"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("nightly-a", "0 1 * * *", "720h"),
        ("nightly-b", "20 1 * * *", "720h"),
        ("nightly-c", "0 3 * * *", "2160h"),
    ]
    .map(|(n, c, t)| (n.to_string(), c.to_string(), t.to_string()));
    assert_eq!(schedules, expected);

    // Each mistake, located at its key (the copy table starts on line 20).
    let refused: [(&str, Code, usize, &str); 6] = [
        (
            "[schedules.nightly.copy.x]\nttl = \"1h\"\n",
            Code::Reference,
            20,
            "no copy in location `x`",
        ),
        (
            "[schedules.nightly.copy.c]\nstagger = \"90s\"\n",
            Code::Stagger,
            21,
            "whole minutes",
        ),
        (
            "[schedules.nightly.copy.c]\nstagger = \"24h\"\n",
            Code::Stagger,
            21,
            "at or after its next run",
        ),
        (
            "[schedules.nightly.copy.c]\nstagger = \"-5m\"\n",
            Code::Stagger,
            21,
            "negative",
        ),
        (
            "[schedules.nightly.copy.c]\nttl = \"a month\"\n",
            Code::Duration,
            21,
            "",
        ),
        (
            "rpo = \"25h\"\n[schedules.nightly.copy.c]\nstagger = \"2h\"\n",
            Code::Rpo,
            20,
            "stagger (2h",
        ),
    ];
    for (table, code, line, why) in refused {
        let files = fixture("stowage.toml", &format!("{locations}{table}"), &[]);
        let found = diagnose(&files.path);
        assert_eq!(found.len(), 1, "{table}: {found:#?}");
        assert_eq!(found[0].code, code, "{table}: {found:#?}");
        assert_eq!(found[0].line, line, "{table}: {found:#?}");
        assert!(
            found[0].message.contains(why),
            "{table}: {}",
            found[0].message
        );
    }
    // The same rpo holds once the last copy runs at most an hour after the cron.
    let files = fixture(
        "stowage.toml",
        &format!("{locations}rpo = \"25h\"\n[schedules.nightly.copy.c]\nstagger = \"1h\"\n"),
        &[],
    );
    assert!(
        diagnose(&files.path).is_empty(),
        "{:#?}",
        diagnose(&files.path)
    );
}
