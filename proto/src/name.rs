//! Validated names: unikernel (and block device) names, identity paths, and the
//! namespaced full name `ops/alice:web`.
//!
//! On the wire each is a postcard string; decoding validates it, so a value of these
//! types is always well formed.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest unikernel name or identity component, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// The most components an identity path may have.
pub const MAX_IDENTITY_DEPTH: usize = 16;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name or component.
    #[error("empty name")]
    Empty,
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("name longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// A character outside `[A-Za-z0-9_-]` (and `.` in identity components).
    #[error("character {0:?} not allowed in a name")]
    BadChar(char),
    /// An identity component of `.` or `..`.
    #[error("identity component {0:?} not allowed")]
    Dots(String),
    /// More than [`MAX_IDENTITY_DEPTH`] components.
    #[error("identity deeper than {MAX_IDENTITY_DEPTH} components")]
    TooDeep,
    /// A full name without the `:` between identity and name.
    #[error("expected IDENTITY:NAME")]
    NoColon,
}

fn check_component(s: &str, allow_dot: bool) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.')))
    {
        return Err(NameError::BadChar(c));
    }
    if s == "." || s == ".." {
        return Err(NameError::Dots(s.to_owned()));
    }
    Ok(())
}

/// A unikernel or block device name: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnikernelName(String);

impl UnikernelName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_component(name, false)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identity: the certificate common names below the trust anchor, joined with `/`
/// (`ops`, `ops/alice`). Components are `[A-Za-z0-9._-]{1,64}`, not `.` or `..`, at most
/// [`MAX_IDENTITY_DEPTH`] of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identity(String);

impl Identity {
    /// Validates a `/`-joined path.
    pub fn new(path: &str) -> Result<Self, NameError> {
        let mut depth = 0;
        for component in path.split('/') {
            check_component(component, true)?;
            depth += 1;
        }
        if depth > MAX_IDENTITY_DEPTH {
            return Err(NameError::TooDeep);
        }
        Ok(Self(path.to_owned()))
    }

    /// Builds the path from certificate common names, root first.
    pub fn from_components<S: AsRef<str>>(components: &[S]) -> Result<Self, NameError> {
        let joined: Vec<&str> = components.iter().map(AsRef::as_ref).collect();
        if joined.iter().any(|c| c.contains('/')) {
            return Err(NameError::BadChar('/'));
        }
        Self::new(&joined.join("/"))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, root first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Every prefix of the path, root first, ending with the path itself
    /// (`ops`, `ops/alice`): the policies a request must satisfy.
    pub fn prefixes(&self) -> impl Iterator<Item = Identity> + '_ {
        self.0
            .match_indices('/')
            .map(|(i, _)| Identity(self.0[..i].to_owned()))
            .chain(core::iter::once(self.clone()))
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &Identity) -> bool {
        other.0 == self.0
            || other
                .0
                .strip_prefix(&self.0)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether `other` is strictly below `self`.
    pub fn is_strictly_above(&self, other: &Identity) -> bool {
        self != other && self.is_prefix_of(other)
    }
}

/// A namespaced name: `IDENTITY:NAME`, e.g. `ops/alice:web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FullName {
    /// The owner.
    pub owner: Identity,
    /// The name within the owner's namespace.
    pub name: UnikernelName,
}

impl FullName {
    /// Joins an owner and a name.
    pub fn new(owner: Identity, name: UnikernelName) -> Self {
        Self { owner, name }
    }
}

macro_rules! string_impls {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_impls!(UnikernelName);
string_impls!(Identity);

impl FromStr for FullName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (owner, name) = s.rsplit_once(':').ok_or(NameError::NoColon)?;
        Ok(Self {
            owner: Identity::new(owner)?,
            name: UnikernelName::new(name)?,
        })
    }
}

impl fmt::Display for FullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.owner, self.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unikernel_names() {
        assert!(UnikernelName::new("web-1_A").is_ok());
        assert!(UnikernelName::new(&"a".repeat(64)).is_ok());
        assert_eq!(UnikernelName::new(&"a".repeat(65)), Err(NameError::TooLong));
        assert_eq!(UnikernelName::new(""), Err(NameError::Empty));
        assert_eq!(UnikernelName::new("a.b"), Err(NameError::BadChar('.')));
        assert_eq!(UnikernelName::new("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(UnikernelName::new("é"), Err(NameError::BadChar('é')));
    }

    #[test]
    fn identities() {
        let id = Identity::new("ops/alice").unwrap();
        assert_eq!(id.components().collect::<Vec<_>>(), ["ops", "alice"]);
        let prefixes: Vec<String> = id.prefixes().map(String::from).collect();
        assert_eq!(prefixes, ["ops", "ops/alice"]);
        let ops = Identity::new("ops").unwrap();
        assert!(ops.is_prefix_of(&id) && ops.is_strictly_above(&id));
        assert!(id.is_prefix_of(&id) && !id.is_strictly_above(&id));
        assert!(!Identity::new("op").unwrap().is_prefix_of(&id));
        assert!(!id.is_prefix_of(&ops));
        assert_eq!(Identity::new("ops/"), Err(NameError::Empty));
        assert_eq!(Identity::new("/ops"), Err(NameError::Empty));
        assert_eq!(Identity::new("ops/.."), Err(NameError::Dots("..".into())));
        assert_eq!(Identity::new("a:b"), Err(NameError::BadChar(':')));
        assert_eq!(Identity::new(&["a"; 17].join("/")), Err(NameError::TooDeep));
        assert!(Identity::new(&["a"; 16].join("/")).is_ok());
        assert_eq!(Identity::from_components(&["ops", "alice"]).unwrap(), id);
        assert_eq!(
            Identity::from_components(&["ops", "a/b"]),
            Err(NameError::BadChar('/'))
        );
    }

    #[test]
    fn full_names() {
        let full: FullName = "ops/alice:web".parse().unwrap();
        assert_eq!(full.owner.as_str(), "ops/alice");
        assert_eq!(full.name.as_str(), "web");
        assert_eq!(full.to_string(), "ops/alice:web");
        assert_eq!("web".parse::<FullName>(), Err(NameError::NoColon));
        assert_eq!(":web".parse::<FullName>(), Err(NameError::Empty));
        assert_eq!("ops:".parse::<FullName>(), Err(NameError::Empty));
        assert_eq!("ops:a:b".parse::<FullName>(), Err(NameError::BadChar(':')));
    }
}
