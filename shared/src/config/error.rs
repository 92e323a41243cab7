//! The one error type of config loading: a message with the file, the YAML path and the line
//! that caused it, so that operators can go straight to the mistake.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted YAML path such as `server[1].listen.address`; empty for the whole file.
    pub path: String,
    /// 1-based; 0 when no single line is to blame.
    pub line: usize,
    pub message: String,
}

impl ConfigError {
    pub fn at(file: &str, path: &str, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }

    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self::at(file, "", 0, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (self.path.is_empty(), self.line) {
            (false, 0) => write!(f, ": {}", self.path)?,
            (false, line) => write!(f, ": {} (line {line})", self.path)?,
            (true, 0) => {}
            (true, line) => write!(f, ": line {line}")?,
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}
