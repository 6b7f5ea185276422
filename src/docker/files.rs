//! Files written into a container before it starts, through Docker's archive API: the tar is built
//! in memory and streamed to the daemon, so a secret file never touches the disk of the machine
//! berth runs on, and never shows in `docker inspect` the way an env value or a bind mount would.

use bollard::query_parameters::UploadToContainerOptions;

use super::connect::{DockerError, HostClient};

/// One file for a container: an absolute path, its bytes and its permission bits (e.g. `0o400`),
/// owned by root. `Debug` shows the size of the contents, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl std::fmt::Debug for ContainerFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerFile")
            .field("path", &self.path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:#o}", self.mode))
            .finish()
    }
}

/// Writes `files` into the (created, not yet started) container; missing directories on the way
/// are made by the daemon (mode 0755, root), existing ones are left as they are. One archive for
/// all files: they land together or not at all.
pub async fn put_files(client: &HostClient, container_id: &str, files: &[ContainerFile]) -> Result<(), DockerError> {
    if files.is_empty() {
        return Ok(());
    }
    let op = format!("put {} file(s) into {container_id}", files.len());
    let archive = archive(files).map_err(|e| DockerError::new(&client.name, &op, e))?;
    let options = UploadToContainerOptions { path: "/".to_string(), ..Default::default() };
    let body = bollard::body_full(archive.into());
    client.call(&op, client.docker.upload_to_container(container_id, Some(options), body)).await
}

/// A tar of `files`, paths relative to `/`. No directory entries: an entry for `/tmp` or `/etc`
/// would reset the mode of the image's own directory, while Docker makes a missing parent itself.
pub fn archive(files: &[ContainerFile]) -> Result<Vec<u8>, String> {
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for file in files {
        let relative = relative_path(&file.path)?;
        if file.mode > 0o7777 {
            return Err(format!("file {}: mode {:#o} is not a permission mode", file.path, file.mode));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        // The path is written by append_data (long paths as GNU long-name entries); the error never
        // carries the contents.
        tar.append_data(&mut header, relative, file.contents.as_slice())
            .map_err(|e| format!("file {}: {e}", file.path))?;
    }
    tar.into_inner().map_err(|e| format!("cannot finish the archive: {e}"))
}

/// `/etc/app/conf` → `etc/app/conf`; refuses a relative path, `..`, `.` and the root itself, so a
/// file can only land where its path says.
fn relative_path(path: &str) -> Result<&str, String> {
    let relative = path.strip_prefix('/').ok_or_else(|| format!("file path {path:?} must be absolute"))?;
    let bad = relative.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad || path.contains('\0') {
        return Err(format!("file path {path:?} must name a file (no empty, `.` or `..` components)"));
    }
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn file(path: &str, contents: &str, mode: u32) -> ContainerFile {
        ContainerFile { path: path.into(), contents: contents.as_bytes().to_vec(), mode }
    }

    #[test]
    fn the_archive_holds_each_file_with_its_path_mode_and_contents() {
        let long = format!("/run/{}/secret", "d".repeat(150));
        let files =
            [file("/run/secrets/db", "hunter2", 0o400), file("/etc/app.conf", "a=1\n", 0o644), file(&long, "x", 0o600)];
        let bytes = archive(&files).unwrap();
        let mut tar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            seen.push((path, mode, text));
        }
        let want = [
            ("run/secrets/db".to_string(), 0o400, "hunter2".to_string()),
            ("etc/app.conf".to_string(), 0o644, "a=1\n".to_string()),
            (long[1..].to_string(), 0o600, "x".to_string()),
        ];
        assert_eq!(seen, want);
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        for bad in ["run/secret", "/", "/run/../etc/shadow", "/run//x", "/run/./x", "/run/dir/", ""] {
            let err = archive(&[file(bad, "v", 0o400)]).unwrap_err();
            assert!(err.contains("file path"), "{bad}: {err}");
        }
        assert!(archive(&[file("/x", "v", 0o100644)]).unwrap_err().contains("not a permission mode"));
    }

    #[test]
    fn debug_shows_the_size_never_the_bytes() {
        let text = format!("{:?}", file("/run/secrets/db", "hunter2", 0o400));
        assert!(!text.contains("hunter2") && !text.contains("104"), "{text}");
        assert!(text.contains("<7 bytes>") && text.contains("0o400"), "{text}");
    }
}
