//! Reading the control-port secrets from files: tor's cookie and the control password.
//!
//! Both reads are bounded and cannot block. The cookie path may come from PROTOCOLINFO, i.e.
//! from whatever answers on the control port, so a path tor names is read only when it is a
//! regular file of exactly 32 bytes: never a device, a fifo (an `open` that would wait for a
//! writer forever), a /proc file (size 0) or a large file (a 1 GB cookie was once read whole
//! on every retry). The configured files are the operator's choice, but are read with the
//! same care: a regular file, at most one byte more than the limit.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use torctl::auth::COOKIE_LEN;

use crate::log::excerpt;

/// Longest control password accepted; tor's own limit is far above any sane password, this
/// only bounds what a wrong file can make us read.
pub const MAX_PASSWORD: usize = 4096;

/// Where a cookie path came from, which decides how far it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieOrigin {
    /// `--tor-cookie`: chosen by the operator.
    Configured,
    /// PROTOCOLINFO's COOKIEFILE: chosen by whatever answers on the control port.
    NamedByTor,
}

/// What kind of file `metadata` describes, for error messages.
fn kind(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a fifo"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading only if it is a regular file, without ever blocking.
///
/// `stat` first, so a fifo or a device is never opened at all (opening a device can have side
/// effects); then `open` with O_NONBLOCK, so a path swapped for a fifo between the two calls
/// cannot hang the thread either; then `fstat` to check that what was opened is the regular
/// file that was stat'ed.
fn open_regular(path: &Path) -> Result<(File, Metadata), String> {
    let before = std::fs::metadata(path).map_err(|error| format!("cannot be read ({error})"))?;
    if !before.file_type().is_file() {
        return Err(format!("is {}, not a regular file", kind(&before)));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| format!("cannot be opened ({error})"))?;
    let after = file
        .metadata()
        .map_err(|error| format!("cannot be read ({error})"))?;
    if !after.file_type().is_file() || (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err("changed while it was being opened".into());
    }
    Ok((file, after))
}

/// Reads at most `limit + 1` bytes: enough to tell "too long" without reading a large file.
fn read_bounded(mut file: File, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(limit + 1);
    file.by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot be read ({error})"))?;
    Ok(bytes)
}

/// Reads tor's 32-byte control cookie; the error names the file, the problem and the fix.
pub fn read_cookie(path: &Path, origin: CookieOrigin) -> Result<[u8; COOKIE_LEN], String> {
    let problem = |problem: String| {
        match origin {
        CookieOrigin::Configured => format!(
            "--tor-cookie {}: the file {problem}; point --tor-cookie at tor's CookieAuthFile, a regular file of {COOKIE_LEN} bytes",
            path.display()
        ),
        // The path is foreign text: only an excerpt reaches the log.
        CookieOrigin::NamedByTor => format!(
            "the cookie file tor names ({}) {problem}, so relaywatch does not use it; set --tor-cookie to tor's CookieAuthFile",
            excerpt(&path.to_string_lossy())
        ),
    }
    };
    let (file, metadata) = open_regular(path).map_err(problem)?;
    // A path tor names must look like a cookie before a single byte is read (a /proc file
    // reports size 0 and has content; it is not a cookie).
    if origin == CookieOrigin::NamedByTor && metadata.len() != COOKIE_LEN as u64 {
        return Err(problem(format!(
            "holds {} bytes, not {COOKIE_LEN}",
            metadata.len()
        )));
    }
    let bytes = read_bounded(file, COOKIE_LEN).map_err(problem)?;
    match bytes.len() {
        COOKIE_LEN => Ok(bytes.try_into().expect("length checked")),
        len if len > COOKIE_LEN => Err(problem(format!("holds more than {COOKIE_LEN} bytes"))),
        len => Err(problem(format!("holds {len} bytes, not {COOKIE_LEN}"))),
    }
}

/// Reads the control password from `--tor-password-file` (one line; a final newline is not
/// part of it).
pub fn read_password(path: &Path) -> Result<String, String> {
    let problem = |problem: String| {
        format!(
            "--tor-password-file {}: the file {problem}; it must be a regular file holding only the control password",
            path.display()
        )
    };
    let (file, _) = open_regular(path).map_err(problem)?;
    let bytes = read_bounded(file, MAX_PASSWORD).map_err(problem)?;
    if bytes.len() > MAX_PASSWORD {
        return Err(problem(format!("holds more than {MAX_PASSWORD} bytes")));
    }
    Ok(String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("fifo");
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn a_32_byte_cookie_is_read_from_either_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        std::fs::write(&path, [7u8; 32]).unwrap();
        for origin in [CookieOrigin::Configured, CookieOrigin::NamedByTor] {
            assert_eq!(read_cookie(&path, origin), Ok([7u8; 32]));
        }
        // A symlink to the cookie (a Kubernetes secret volume is made of them) is fine.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_cookie(&link, CookieOrigin::NamedByTor), Ok([7u8; 32]));
    }

    #[test]
    fn wrong_sizes_are_refused_without_reading_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, [1u8; 31]).unwrap();
        let error = read_cookie(&short, CookieOrigin::Configured).unwrap_err();
        assert!(error.contains("holds 31 bytes, not 32"), "{error}");
        assert!(error.contains("--tor-cookie"), "{error}");
        // A sparse 1 GiB file: refused after 33 bytes, or, named by tor, after fstat alone.
        let huge = dir.path().join("huge");
        File::create(&huge).unwrap().set_len(1 << 30).unwrap();
        let error = read_cookie(&huge, CookieOrigin::Configured).unwrap_err();
        assert!(error.contains("holds more than 32 bytes"), "{error}");
        let error = read_cookie(&huge, CookieOrigin::NamedByTor).unwrap_err();
        assert!(error.contains("holds 1073741824 bytes, not 32"), "{error}");
    }

    #[test]
    fn fifos_devices_directories_and_proc_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        let error = read_cookie(&fifo, CookieOrigin::Configured).unwrap_err();
        assert!(error.contains("is a fifo, not a regular file"), "{error}");
        assert!(read_password(&fifo).unwrap_err().contains("is a fifo"));
        for (path, kind) in [("/dev/zero", "a device"), ("/tmp", "a directory")] {
            let error = read_cookie(Path::new(path), CookieOrigin::NamedByTor).unwrap_err();
            assert!(error.contains(kind), "{error}");
        }
        let error =
            read_cookie(Path::new("/proc/self/environ"), CookieOrigin::NamedByTor).unwrap_err();
        assert!(error.contains("holds 0 bytes"), "{error}");
        let error = read_cookie(&dir.path().join("missing"), CookieOrigin::NamedByTor).unwrap_err();
        assert!(error.contains("cannot be read"), "{error}");
    }

    #[test]
    fn a_path_tor_names_is_logged_as_an_excerpt_only() {
        let path = Path::new("/tmp/x\r\n\0 198.51.100.7 abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz234567.onion");
        let error = read_cookie(path, CookieOrigin::NamedByTor).unwrap_err();
        assert!(
            !error.contains("198.51") && !error.contains(".onion"),
            "{error}"
        );
        assert!(!error.chars().any(char::is_control), "{error:?}");
    }

    #[test]
    fn passwords_are_bounded_and_lose_their_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret pass\r\n").unwrap();
        assert_eq!(read_password(&path).unwrap(), "s3cret pass");
        std::fs::write(&path, "x".repeat(MAX_PASSWORD + 1)).unwrap();
        let error = read_password(&path).unwrap_err();
        assert!(error.contains("more than 4096 bytes"), "{error}");
    }
}
