//! The operator's touches that need no server: shell completions and the manual,
//! both generated from the command-line definitions.

use std::process::Command;

fn k5up(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_k5up")).args(args).env_clear().output().unwrap();
    assert!(out.status.success(), "k5up {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// What bash's completion offers for the words typed so far (the script is
/// sourced into a real bash, as /etc/bash_completion.d does).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k5up.bash");
    std::fs::write(&path, script).unwrap();
    let words_q: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _k5up k5up '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words_q.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash").args(["--norc", "-c", &prog]).output().expect("bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_offers_the_commands_and_their_options() {
    let script = String::from_utf8(k5up(&["completions", "bash"]).stdout).unwrap();
    assert_eq!(bash_completes(&script, &["k5up", "sh"]), ["share"]);
    assert!(bash_completes(&script, &["k5up", "ac"]).contains(&"accept".to_string()));
    let opts = bash_completes(&script, &["k5up", "upload", "--share"]);
    assert!(opts.contains(&"--share-with".to_string()) && opts.contains(&"--share-domain".to_string()), "{opts:?}");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let s = String::from_utf8(k5up(&["completions", shell]).stdout).unwrap();
        assert!(s.contains("share-with") && s.contains("accept"), "{shell}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_k5up")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_manual_has_a_page_for_every_command() {
    let page = String::from_utf8(k5up(&["man"]).stdout).unwrap();
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page:.200}");
    assert!(page.contains(".TH k5up 1"), "{page:.300}");
    for cmd in ["upload", "resume", "status", "jobs", "abort", "import", "share", "accept", "verify"] {
        assert!(page.contains(&format!("k5up\\-{cmd}(1)")), "{cmd} missing from the index");
    }
    assert!(page.contains("Exit codes"));
    let dir = tempfile::tempdir().unwrap();
    let out = k5up(&["man", "--dir", dir.path().to_str().unwrap()]);
    let listed = String::from_utf8(out.stdout).unwrap();
    for cmd in ["upload", "share", "accept", "completions"] {
        let p = dir.path().join(format!("k5up-{cmd}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.contains(&format!(".TH k5up-{cmd} 1")), "{text:.300}");
        assert!(listed.contains(p.to_str().unwrap()));
    }
    let share = std::fs::read_to_string(dir.path().join("k5up-share.1")).unwrap();
    assert!(share.contains("\\-\\-with") && share.contains("\\-\\-share\\-domain"), "{share}");
}
