//! Which files a dynamically linked program needs, from `ldd`'s output. Pure.

use std::path::PathBuf;

/// The absolute paths `ldd` names: `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)` and the
/// loader line `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file and is skipped.
/// A `not found` library is an error naming it, because the image would not start.
pub fn needed_files(ldd_output: &str) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for line in ldd_output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("ldd: {} not found", name.trim()));
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libraries_and_loader_and_skips_vdso() {
        let output = "\tlinux-vdso.so.1 (0x00007f15a70d6000)\n\
            \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f15a70a6000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f15a6292000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f15a70d8000)\n";
        assert_eq!(
            needed_files(output).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_named() {
        let error = needed_files("\tlibevent-2.1.so.7 => not found\n").unwrap_err();
        assert!(error.contains("libevent-2.1.so.7"), "{error}");
    }

    #[test]
    fn a_static_program_needs_nothing() {
        assert!(needed_files("\tstatically linked\n").unwrap().is_empty());
    }
}
