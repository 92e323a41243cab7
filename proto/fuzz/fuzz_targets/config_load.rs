//! Fuzz target: the config loader on arbitrary text. The input is `main.yml`, and after a line
//! `#--` a second file `other.yml` that the first may include. Loading may refuse anything; it
//! may not panic (cargo-fuzz builds abort on panic, so the loader's own panic guard does not
//! hide one here).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;

use g3proxy_shared::config::{ConfigBundle, load_bundle};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (main, other) = text.split_once("\n#--\n").unwrap_or((&text, ""));
    let dir = PathBuf::from("/fuzz");
    let files = BTreeMap::from([
        (dir.join("main.yml"), main.to_string()),
        (dir.join("other.yml"), other.to_string()),
    ]);
    let bundle = ConfigBundle {
        entry: dir.join("main.yml"),
        files,
        dirs: BTreeMap::new(),
    };
    let _ = load_bundle(&bundle);
});
