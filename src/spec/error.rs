//! Errors that point a user at the exact spot of a bad resource file.

use std::fmt;

/// One problem in one document of one file, located by a field path.
///
/// Displayed as `file[doc]: path: message` so a user can jump straight to the bad field;
/// `doc` is the 0-based position of the document in the file and is absent for problems with
/// the file as a whole (unreadable, not YAML at all); an empty `path` means the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file name as the user gave it (or a label such as `<stdin>`).
    pub file: String,
    /// 0-based index of the document within the file, if the problem belongs to one.
    pub doc: Option<usize>,
    /// Dotted field path such as `spec.roles.web.ports[0]`; empty for the whole document/file.
    pub path: String,
    /// What is wrong, phrased for the user.
    pub message: String,
}

impl SpecError {
    /// Builds an error for a field of one document.
    pub fn new(file: &str, doc: Option<usize>, path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { file: file.to_string(), doc, path: path.into(), message: message.into() }
    }

    /// `file[doc]`: how other errors (e.g. duplicates) refer to a document's location.
    pub fn location(&self) -> String {
        location(&self.file, self.doc)
    }
}

/// Formats `file[doc]` (or just `file`), the prefix shared by every error line.
pub fn location(file: &str, doc: Option<usize>) -> String {
    match doc {
        Some(d) => format!("{file}[{d}]"),
        None => file.to_string(),
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location())?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// Every problem found in a batch of files, so a user fixes them all in one round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct SpecErrors(pub Vec<SpecError>);

fn lines(errors: &[SpecError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl SpecErrors {
    /// `Ok(value)` when nothing was collected, otherwise all the errors.
    pub fn into_result<T>(self, value: T) -> Result<T, SpecErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_path_and_doc() {
        let e = SpecError::new("shop.yaml", Some(1), "spec.roles.web.ports[0]", "host port 70000 out of range");
        assert_eq!(e.to_string(), "shop.yaml[1]: spec.roles.web.ports[0]: host port 70000 out of range");
        assert_eq!(SpecError::new("a.yaml", None, "", "cannot read").to_string(), "a.yaml: cannot read");
        let all = SpecErrors(vec![e.clone(), e]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
