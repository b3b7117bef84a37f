//! Keystone v3 against a real Keystone: password (RC file), application credential,
//! clouds.yaml, the catalog's object-store endpoint, a pre-authenticated token, and
//! a Swift whose /info is hidden (Swift's documented defaults are used).

mod common;

use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

fn upload_and_check(run: &Run, tb: &Testbed, object: &str) {
    let src = run.path("disk.img");
    let md5 = write_random(&src, 5 * MIB + 17, 11);
    let c = unique("ks");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "-o", object, "--segment-size", "2MiB", "--no-progress"]);
    let st = run.status(&run.only_job());
    assert_eq!(st["storage_url"].as_str().unwrap(), tb.var("KS_SWIFT_URL"), "endpoint from the catalog");
    assert_eq!(Observer::keystone(tb).get_md5(&c, object).unwrap(), (md5, 5 * MIB + 17));
}

fn env_run(vars: &[(String, String)]) -> Run {
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Run::with_env(&v)
}

#[test]
fn password_from_an_rc_file() {
    let tb = Testbed::get();
    upload_and_check(&env_run(&tb.keystone_password_env()), &tb, "rc.img");
}

#[test]
fn project_by_id_and_application_credential() {
    let tb = Testbed::get();
    let mut vars = tb.keystone_password_env();
    vars.retain(|(k, _)| k != "OS_PROJECT_NAME");
    vars.push(("OS_PROJECT_ID".into(), tb.var("KS_OS_PROJECT_ID")));
    upload_and_check(&env_run(&vars), &tb, "by-id.img");
    let ac = env_run(&[
        ("OS_AUTH_URL".into(), tb.var("KS_OS_AUTH_URL")),
        ("OS_APPLICATION_CREDENTIAL_ID".into(), tb.var("KS_OS_APPLICATION_CREDENTIAL_ID")),
        ("OS_APPLICATION_CREDENTIAL_SECRET".into(), tb.var("KS_OS_APPLICATION_CREDENTIAL_SECRET")),
    ]);
    upload_and_check(&ac, &tb, "appcred.img");
}

#[test]
fn clouds_yaml() {
    let tb = Testbed::get();
    for cloud in ["k5up-testbed", "k5up-testbed-appcred"] {
        let run =
            env_run(&[("OS_CLOUD".into(), cloud.into()), ("OS_CLIENT_CONFIG_FILE".into(), tb.var("KS_CLOUDS_YAML"))]);
        upload_and_check(&run, &tb, &format!("{cloud}.img"));
    }
}

#[test]
fn hidden_info_falls_back_to_swift_defaults() {
    let tb = Testbed::get();
    let run = env_run(&tb.keystone_password_env());
    let src = run.path("d.img");
    write_random(&src, MIB, 1);
    let out = run.ok(&["upload", src.to_str().unwrap(), "-c", "x", "--dry-run"]);
    assert!(out.contains("Swift defaults: /info unavailable"), "{out}");
    assert!(out.contains("max_file_size 5368709122"), "{out}");
}

#[test]
fn keystone_errors_are_clear() {
    let tb = Testbed::get();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"x").unwrap();
    let s = src.path().to_str().unwrap();
    let mut vars = tb.keystone_password_env();
    for (k, v) in vars.iter_mut() {
        if k == "OS_PASSWORD" {
            *v = "wrong-password".into();
        }
    }
    let out = env_run(&vars).run(&["upload", s, "-c", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("credentials were rejected") && !err.contains("wrong-password"), "{err}");

    let mut vars = tb.keystone_password_env();
    for (k, v) in vars.iter_mut() {
        if k == "OS_REGION_NAME" {
            *v = "Atlantis".into();
        }
    }
    let out = env_run(&vars).run(&["upload", s, "-c", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("no object-store endpoint") && err.contains("region Atlantis"), "{err}");
}

#[test]
fn pre_authenticated_token() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    let run =
        env_run(&[("OS_STORAGE_URL".into(), obs.storage_url.clone()), ("OS_AUTH_TOKEN".into(), obs.token.clone())]);
    upload_and_check(&run, &tb, "preauth.img");
    let bad = env_run(&[("OS_STORAGE_URL".into(), obs.storage_url.clone()), ("OS_AUTH_TOKEN".into(), "nope".into())]);
    let out = bad.run(&["upload", run.path("disk.img").to_str().unwrap(), "-c", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
