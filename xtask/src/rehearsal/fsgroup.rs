//! What kubelet does to a volume for a pod's `fsGroup` before the pod starts, emulated on the
//! podman volume (podman kube play ignores `fsGroup`). Ported from kubelet's
//! pkg/volume/volume_linux.go (`SetVolumeOwnership`): with `fsGroupChangePolicy: OnRootMismatch`
//! nothing is changed while the volume's root already has the group, `rwx` for the group and
//! the setgid bit; otherwise every file and directory gets the group, group `rw` (`rwx` and
//! setgid on directories). The decisions are pure; `apply` is the IO.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

const RW_MASK: u32 = 0o660;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Whether kubelet changes the volume under `OnRootMismatch`, from its root's gid and mode.
pub fn root_mismatch(root_gid: u32, root_mode: u32, root_is_dir: bool, fs_group: u32) -> bool {
    if root_gid != fs_group || !root_is_dir {
        return true;
    }
    let wanted = RW_MASK | EXEC_MASK;
    root_mode & wanted != wanted || root_mode & SETGID == 0
}

/// The mode kubelet gives one file or directory.
pub fn new_mode(mode: u32, is_dir: bool) -> u32 {
    let mut mask = RW_MASK;
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// Applies `fs_group` to the volume at `root` as kubelet would; returns whether it changed
/// anything (false when `on_root_mismatch` and the root already matches).
pub fn apply(root: &Path, fs_group: u32, on_root_mismatch: bool) -> Result<bool> {
    let meta = std::fs::metadata(root).with_context(|| format!("stat {}", root.display()))?;
    if on_root_mismatch && !root_mismatch(meta.gid(), meta.mode(), meta.is_dir(), fs_group) {
        return Ok(false);
    }
    walk(root, fs_group)?;
    Ok(true)
}

fn walk(path: &Path, fs_group: u32) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    std::os::unix::fs::lchown(path, None, Some(fs_group))
        .with_context(|| format!("chown {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = new_mode(meta.mode(), meta.is_dir());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("list {}", path.display()))? {
            walk(&entry?.path(), fs_group)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_root_owned_volume_mismatches() {
        // ext4's root directory: root:root 0755.
        assert!(root_mismatch(0, 0o40755, true, 10002));
    }

    #[test]
    fn a_volume_kubelet_already_changed_is_left_alone() {
        assert!(!root_mismatch(10002, 0o42775, true, 10002));
    }

    #[test]
    fn a_root_that_lost_setgid_or_group_write_is_changed_again() {
        // tor's DataDirectoryGroupReadable chmods its DataDirectory to 0750.
        assert!(root_mismatch(10002, 0o40750, true, 10002));
        assert!(root_mismatch(10002, 0o40775, true, 10002));
    }

    #[test]
    fn directories_get_setgid_and_group_rwx_files_group_rw() {
        assert_eq!(new_mode(0o700, true), 0o2770);
        assert_eq!(new_mode(0o600, false), 0o660);
        assert_eq!(new_mode(0o40755, true), 0o2775);
    }
}
