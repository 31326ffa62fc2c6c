//! What one policy operation may touch. A policy is code from whoever can write the watched
//! path, so the host treats it as hostile: every import checks the call's [`OpScope`] before it
//! reaches a store, and a call outside it traps with [`HostTrap::Refused`] naming the operation,
//! the session and the target. Nothing outside the scope is ever changed, because the check runs
//! before the store call.
//!
//! [`HostTrap::Refused`]: super::HostTrap::Refused

use std::collections::BTreeSet;

use super::{HostError, HostTrap};
use crate::error::Op;

/// The suffix of a session's archive name (`<id>.jsonl.gz`, the seed's contract). A session's
/// scope holds exactly this one name: a prefix rule would let `a` reach the archive of `a.b`.
pub const ARCHIVE_SUFFIX: &str = ".jsonl.gz";

/// The session's live output file name (kept equal to `store::OUTPUT_FILE`).
pub const OUTPUT: &str = crate::store::OUTPUT_FILE;

/// Whether an import only reads or also changes a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (stat, read, get, open, path).
    Read,
    /// Changes (create, append, delete, rename, update-meta, remove, write).
    Write,
}

/// The stores a call may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything: the in-guest `sweep`, which works on every session in one call.
    Unrestricted,
    /// Reads anywhere, no writes: `plan`, `validate-config`, `info`.
    ReadOnly,
    /// One session: its zone in the file store, its object, its archive `<id>.jsonl.gz`
    /// (`archive`, `restore`, `export`, `recover` of that session). Listing is refused: a
    /// listing would show other sessions' meta.
    Session(String),
    /// A member helper of one session's archive (`compress-member`): reads of that session's
    /// `output`, nothing else.
    Member(String),
    /// An inflate helper of one session's restore or export (`inflate-member`): it is handed
    /// the member's bytes and may touch no store at all.
    Inflate(String),
    /// `prune`: the archives listed when the call started and the objects of the sessions they
    /// belong to (for the tombstone). `archive-dir.list` shows only those archives, so an
    /// archive written while prune runs is never seen, let alone removed. No file-store access.
    Archives {
        /// Archive names listed at the start.
        names: BTreeSet<String>,
        /// Session ids of `<id>.jsonl.gz` among them.
        sessions: BTreeSet<String>,
    },
}

impl Scope {
    /// The prune scope for the archives `names` (listed by the host at the start of the call).
    pub fn archives(names: impl IntoIterator<Item = String>) -> Self {
        let names: BTreeSet<String> = names.into_iter().collect();
        let sessions = names
            .iter()
            .filter_map(|n| n.strip_suffix(ARCHIVE_SUFFIX))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        Scope::Archives { names, sessions }
    }
}

/// The operation a host call serves and what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpScope {
    /// The operation.
    pub op: Op,
    /// The session it was called for, if any (named in refusals).
    pub session: Option<String>,
    /// What it may touch.
    pub scope: Scope,
}

impl OpScope {
    /// No limits beyond the quotas: for state built outside any operation.
    pub fn unrestricted(op: Op) -> Self {
        OpScope {
            op,
            session: None,
            scope: Scope::Unrestricted,
        }
    }

    /// The scope the host gives `op` on `target`. `prune_archives` is the archive listing taken
    /// at the start of a prune (ignored for other operations).
    pub fn for_op(op: Op, target: Option<&str>, prune_archives: Vec<String>) -> Self {
        let scope = match (op, target) {
            (Op::Archive | Op::Restore | Op::Export | Op::Recover, Some(id)) => {
                Scope::Session(id.to_string())
            }
            // A per-session operation without a session may touch nothing.
            (Op::Archive | Op::Restore | Op::Export | Op::Recover, None) => Scope::ReadOnly,
            (Op::Plan | Op::ValidateConfig | Op::Info, _) => Scope::ReadOnly,
            (Op::Prune, _) => Scope::archives(prune_archives),
        };
        OpScope {
            op,
            session: target.map(str::to_string),
            scope,
        }
    }

    /// Refuses `import` on `target` because `why`.
    pub fn refuse(&self, import: &'static str, target: impl Into<String>, why: &str) -> HostError {
        HostError::Trap(wasmtime::Error::new(HostTrap::Refused {
            op: self.op,
            session: self.session.clone(),
            import,
            target: target.into(),
            why: why.to_string(),
        }))
    }

    fn write_check(
        &self,
        import: &'static str,
        target: &str,
        access: Access,
    ) -> Result<(), HostError> {
        if access == Access::Write && self.scope == Scope::ReadOnly {
            return Err(self.refuse(import, target, &format!("{} is read-only", self.op)));
        }
        if let (Access::Write, Scope::Member(id)) = (access, &self.scope) {
            return Err(self.refuse(import, target, &member_only(id)));
        }
        Ok(())
    }

    /// May `import` touch file `zone/name`?
    pub fn file(
        &self,
        import: &'static str,
        zone: &str,
        name: &str,
        access: Access,
    ) -> Result<(), HostError> {
        let target = format!("file {zone}/{name}");
        self.write_check(import, &target, access)?;
        match &self.scope {
            Scope::Unrestricted | Scope::ReadOnly => Ok(()),
            Scope::Session(id) if id == zone => Ok(()),
            Scope::Member(id) if id == zone && name == OUTPUT => Ok(()),
            Scope::Member(id) => Err(self.refuse(import, target, &member_only(id))),
            Scope::Inflate(id) => Err(self.refuse(import, target, &inflate_only(id))),
            Scope::Session(id) => Err(self.refuse(
                import,
                target,
                &format!(
                    "{} of session {id} may only touch that session's files",
                    self.op
                ),
            )),
            Scope::Archives { .. } => Err(self.refuse(
                import,
                target,
                "prune may only touch archives, not the file store",
            )),
        }
    }

    /// May `import` touch object `id`?
    pub fn object(&self, import: &'static str, id: &str, access: Access) -> Result<(), HostError> {
        let target = format!("object {id}");
        self.write_check(import, &target, access)?;
        match &self.scope {
            Scope::Unrestricted | Scope::ReadOnly => Ok(()),
            Scope::Session(own) if own == id => Ok(()),
            Scope::Member(own) => Err(self.refuse(import, target, &member_only(own))),
            Scope::Inflate(own) => Err(self.refuse(import, target, &inflate_only(own))),
            Scope::Session(own) => Err(self.refuse(
                import,
                target,
                &format!(
                    "{} of session {own} may only touch that session's object",
                    self.op
                ),
            )),
            Scope::Archives { sessions, .. } if sessions.contains(id) => Ok(()),
            Scope::Archives { .. } => Err(self.refuse(
                import,
                target,
                "prune may only touch the sessions of the archives listed when it started",
            )),
        }
    }

    /// May `import` list every object?
    pub fn list_objects(&self, import: &'static str) -> Result<(), HostError> {
        match &self.scope {
            Scope::Unrestricted | Scope::ReadOnly => Ok(()),
            Scope::Member(own) => Err(self.refuse(import, "all objects", &member_only(own))),
            Scope::Inflate(own) => Err(self.refuse(import, "all objects", &inflate_only(own))),
            Scope::Session(own) => Err(self.refuse(
                import,
                "all objects",
                &format!("{} of session {own} may not read other sessions", self.op),
            )),
            Scope::Archives { .. } => Err(self.refuse(
                import,
                "all objects",
                "prune may only touch the sessions of the archives listed when it started",
            )),
        }
    }

    /// May `import` touch archive `name`?
    pub fn archive(
        &self,
        import: &'static str,
        name: &str,
        access: Access,
    ) -> Result<(), HostError> {
        let target = format!("archive {name}");
        self.write_check(import, &target, access)?;
        match &self.scope {
            Scope::Unrestricted | Scope::ReadOnly => Ok(()),
            Scope::Session(own) if name.strip_suffix(ARCHIVE_SUFFIX) == Some(own.as_str()) => {
                Ok(())
            }
            Scope::Member(own) => Err(self.refuse(import, target, &member_only(own))),
            Scope::Inflate(own) => Err(self.refuse(import, target, &inflate_only(own))),
            Scope::Session(own) => Err(self.refuse(
                import,
                target,
                &format!(
                    "{} of session {own} may only touch its archive {own}{ARCHIVE_SUFFIX}",
                    self.op
                ),
            )),
            Scope::Archives { names, .. } if names.contains(name) => Ok(()),
            Scope::Archives { .. } => Err(self.refuse(
                import,
                target,
                "prune may only touch the archives listed when it started",
            )),
        }
    }

    /// May `import` list the archive directory? `Ok(Some(names))` means: only these may be
    /// shown.
    pub fn list_archives(
        &self,
        import: &'static str,
    ) -> Result<Option<&BTreeSet<String>>, HostError> {
        match &self.scope {
            Scope::Unrestricted | Scope::ReadOnly => Ok(None),
            Scope::Member(own) => Err(self.refuse(import, "all archives", &member_only(own))),
            Scope::Inflate(own) => Err(self.refuse(import, "all archives", &inflate_only(own))),
            Scope::Session(own) => Err(self.refuse(
                import,
                "all archives",
                &format!(
                    "{} of session {own} may not read other sessions' archives",
                    self.op
                ),
            )),
            Scope::Archives { names, .. } => Ok(Some(names)),
        }
    }
}

/// Why an inflate helper (handed one member's bytes) is refused.
fn inflate_only(own: &str) -> String {
    format!("an inflate helper of session {own} may touch no store")
}

/// Why a member helper (which compresses or checks one piece of a session's output) is refused.
fn member_only(own: &str) -> String {
    format!("a member helper of session {own} may only read its output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<(), HostError>) -> bool {
        matches!(r, Err(HostError::Trap(e)) if matches!(e.downcast_ref::<HostTrap>(), Some(HostTrap::Refused { .. })))
    }

    /// A helper's scope reaches no object and no archive, its own session's included.
    fn refuses_objects_and_archives(s: &OpScope) {
        assert!(refused(s.object("objects.get", "a", Access::Read)));
        assert!(refused(s.list_objects("objects.list")));
        assert!(refused(s.archive(
            "archive-dir.open",
            "a.jsonl.gz",
            Access::Read
        )));
        assert!(s.list_archives("archive-dir.list").is_err());
    }

    #[test]
    fn a_member_helper_may_only_read_its_sessions_output() {
        let s = OpScope {
            op: Op::Archive,
            session: Some("a".into()),
            scope: Scope::Member("a".into()),
        };
        assert!(s.file("files.read", "a", OUTPUT, Access::Read).is_ok());
        assert!(s.file("files.stat", "a", OUTPUT, Access::Read).is_ok());
        assert!(refused(s.file("files.append", "a", OUTPUT, Access::Write)));
        assert!(refused(s.file("files.read", "a", "outnew", Access::Read)));
        assert!(refused(s.file("files.read", "b", OUTPUT, Access::Read)));
        refuses_objects_and_archives(&s);
    }

    #[test]
    fn an_inflate_helper_may_touch_no_store() {
        let s = OpScope {
            op: Op::Restore,
            session: Some("a".into()),
            scope: Scope::Inflate("a".into()),
        };
        assert!(refused(s.file("files.read", "a", OUTPUT, Access::Read)));
        assert!(refused(s.file("files.stat", "a", OUTPUT, Access::Read)));
        refuses_objects_and_archives(&s);
    }

    #[test]
    fn a_session_scope_reaches_only_its_own_zone_object_and_archive() {
        let s = OpScope::for_op(Op::Archive, Some("a"), Vec::new());
        assert!(s.file("files.read", "a", "output", Access::Write).is_ok());
        assert!(refused(s.file("files.read", "b", "output", Access::Read)));
        assert!(s.object("objects.get", "a", Access::Write).is_ok());
        assert!(refused(s.object("objects.get", "b", Access::Read)));
        assert!(s
            .archive("archive-dir.open", "a.jsonl.gz", Access::Write)
            .is_ok());
        assert!(refused(s.archive(
            "archive-dir.open",
            "a.b.jsonl.gz",
            Access::Read
        )));
        assert!(refused(s.archive(
            "archive-dir.open",
            "b.jsonl.gz",
            Access::Read
        )));
        assert!(refused(s.list_objects("objects.list")));
        assert!(s.list_archives("archive-dir.list").is_err());
    }

    #[test]
    fn a_read_only_scope_refuses_every_write_and_allows_reads() {
        let s = OpScope::for_op(Op::Plan, None, Vec::new());
        assert!(s.file("files.stat", "a", "output", Access::Read).is_ok());
        assert!(refused(s.file("files.append", "a", "x", Access::Write)));
        assert!(refused(s.object("objects.update-meta", "a", Access::Write)));
        assert!(refused(s.archive(
            "archive-dir.remove",
            "a.jsonl.gz",
            Access::Write
        )));
        assert!(s.list_objects("objects.list").is_ok());
    }

    #[test]
    fn a_prune_scope_holds_the_listed_archives_and_their_sessions_only() {
        let s = OpScope::for_op(
            Op::Prune,
            None,
            vec!["a.jsonl.gz".into(), "orphan.gz".into()],
        );
        assert!(s
            .archive("archive-dir.remove", "a.jsonl.gz", Access::Write)
            .is_ok());
        assert!(s
            .archive("archive-dir.remove", "orphan.gz", Access::Write)
            .is_ok());
        assert!(refused(s.archive(
            "archive-dir.remove",
            "new.jsonl.gz",
            Access::Write
        )));
        assert!(s.object("objects.update-meta", "a", Access::Write).is_ok());
        assert!(refused(s.object(
            "objects.update-meta",
            "orphan",
            Access::Write
        )));
        assert!(refused(s.file("files.read", "a", "output", Access::Read)));
    }
}
