//! Error types, in execnet's hierarchy: `DumpError` and `LoadError` are both
//! a `DataFormatError`.

use std::fmt;

/// A value could not be encoded (or a frame could not be packed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    message: String,
}

impl DumpError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DumpError { message: message.into() }
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DumpError {}

/// Bytes are not a valid encoded value or frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    message: String,
    offset: usize,
}

impl LoadError {
    pub(crate) fn new(message: impl Into<String>, offset: usize) -> Self {
        LoadError { message: message.into(), offset }
    }

    /// What went wrong, in words (without the offset).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for LoadError {}

/// Either codec error, for callers that handle both alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFormatError {
    /// Encoding failed.
    Dump(DumpError),
    /// Decoding failed.
    Load(LoadError),
}

impl fmt::Display for DataFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataFormatError::Dump(e) => write!(f, "DumpError: {e}"),
            DataFormatError::Load(e) => write!(f, "LoadError: {e}"),
        }
    }
}

impl std::error::Error for DataFormatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataFormatError::Dump(e) => Some(e),
            DataFormatError::Load(e) => Some(e),
        }
    }
}

impl From<DumpError> for DataFormatError {
    fn from(e: DumpError) -> Self {
        DataFormatError::Dump(e)
    }
}

impl From<LoadError> for DataFormatError {
    fn from(e: LoadError) -> Self {
        DataFormatError::Load(e)
    }
}
