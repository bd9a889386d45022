//! The shell scripts a user runs outside cargo: `scripts/gpu-check` stops at once, with exit 2 and
//! a message saying why, on a machine without an NVIDIA GPU (a GPU machine runs it for real; see
//! the README, "GPU and speed").

use std::process::Command;

#[test]
fn gpu_check_fails_clearly_without_a_gpu() {
    let has_gpu = Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GPU "));
    if has_gpu {
        eprintln!("an NVIDIA GPU is present: run scripts/gpu-check itself instead");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("bash").arg(root.join("scripts/gpu-check")).arg(out.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("gpu-check: no NVIDIA GPU here"), "{err}");
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written before the check fails");
}

/// The CI templates in ci/: every `repro` and `repro-lite` command they run parses with the
/// binaries' own command lines (variables stand in for their values), and both are valid YAML.
#[test]
fn ci_templates_call_real_commands() {
    use clap::Parser;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for file in ["ci/github-actions.yml", "ci/gitlab-ci.yml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let _: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let Some(at) = line.find("target/release/repro") else { continue };
            let cmd = &line[at..];
            // Substitute the variables and $(...) with placeholders, then split like a shell.
            let cmd = cmd.replace("\"reports/$(basename \"$SUITE\" .yaml)\"", "reports/smoke").replace("$TOLERANCE", "2.0");
            let words: Vec<String> = cmd.split_whitespace().map(|w| w.trim_matches('"').replace('$', "")).collect();
            let (bin, args) = (words[0].rsplit('/').next().unwrap().to_owned(), &words[1..]);
            let argv = std::iter::once(bin.clone()).chain(args.iter().cloned());
            let parsed = match bin.as_str() {
                "repro" => repro::cli::Cli::try_parse_from(argv).map(|_| ()),
                "repro-lite" => repro_lite::cli::LiteCli::try_parse_from(argv).map(|_| ()),
                other => panic!("{file}: unknown binary {other} in {line}"),
            };
            parsed.unwrap_or_else(|e| panic!("{file}: {line}\n{e}"));
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} commands found");
}
