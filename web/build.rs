//! Installs the portal's front-end packages (`package.json` + `package-lock.json`: Bootstrap
//! Italia; axe-core for the browser tests) with npm when they are missing, so that `cargo build`
//! on a fresh machine embeds them (`src/portal/assets.rs`). Nothing is fetched at run time; the
//! packages are never committed.
//! Node.js/npm come from the machine (Debian `nodejs npm`, installed here when missing and
//! running as root with apt-get).

use std::path::Path;
use std::process::Command;

fn have_npm() -> bool {
    Command::new("npm")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

// a build script fails the build by panicking with its message
#[allow(clippy::panic)]
fn main() {
    println!("cargo:rerun-if-changed=package.json");
    println!("cargo:rerun-if-changed=package-lock.json");
    println!("cargo:rerun-if-changed=node_modules/bootstrap-italia/package.json");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dist =
        Path::new(&dir).join("node_modules/bootstrap-italia/dist/css/bootstrap-italia.min.css");
    // axe-core (devDependency): injected by the browser tests, never embedded
    let axe = Path::new(&dir).join("node_modules/axe-core/axe.min.js");
    if dist.exists() && axe.exists() {
        return;
    }
    if !have_npm() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if root {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-qq", "nodejs", "npm"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&dir)
        .status();
    match status {
        Ok(s) if s.success() && dist.exists() => {}
        other => panic!(
            "could not install the portal's npm packages in {dir} ({other:?}): install Node.js and npm (Debian: apt-get install nodejs npm) and run `npm ci` there"
        ),
    }
}
