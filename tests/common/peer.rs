//! Python test peers on loopback (`tests/peers/*`): started from the identity venv,
//! they print `listening <base URL>` and serve until dropped.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

/// A running peer, stopped when dropped.
pub struct Peer {
    child: Child,
    /// Its base URL (`http://127.0.0.1:<port>`).
    pub base: String,
    /// Its scratch directory.
    pub dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Starts `script` (relative to the project) on a free port with `args`; `{dir}` in
    /// an argument is its scratch directory. `setup` names the script that installs it.
    pub fn start(script: &str, args: &[&str], setup: &str) -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/venv-identity/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run {setup} (scripts/test.sh does)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = dir.path().display().to_string();
        let mut child = Command::new(python)
            .arg(root.join(script))
            .args(["--port", "0"])
            .args(args.iter().map(|a| a.replace("{dir}", &scratch)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the peer's first line");
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("{script} said {line:?} (run {setup})"))
            .to_owned();
        Self { child, base, dir }
    }
}
