//! `session-archiver:policy/objects`: sessions and their meta, delegated to [`ObjectStore`].
//!
//! [`ObjectStore`]: crate::store::ObjectStore

use serde_json::Value;

use super::{Access, HostError, HostState};
use crate::bindings::session_archiver::policy::objects::{self, Error, Object, Page};
use crate::store::{self, StoreError};

/// Largest page a guest may ask for (the WIT contract's 1..=1000).
pub const MAX_PAGE: u32 = 1000;

fn to_wit(o: store::Object) -> Result<Object, HostError> {
    let meta = serde_json::to_string(&o.meta)
        .map_err(|e| HostError::Store(StoreError::Io(format!("meta of {:?}: {e}", o.id))))?;
    Ok(Object {
        id: o.id,
        meta,
        version: o.version,
    })
}

impl objects::Host for HostState {
    fn list(&mut self, after: Option<String>, limit: u32) -> Result<Page, HostError> {
        self.call(|s| {
            if !(1..=MAX_PAGE).contains(&limit) {
                return Err(HostError::invalid(format!(
                    "page limit {limit} is outside 1..={MAX_PAGE}"
                )));
            }
            s.scope.list_objects("objects.list")?;
            let page = s.stores.objects.list(after.as_deref(), limit)?;
            let objects = page
                .objects
                .into_iter()
                .map(to_wit)
                .collect::<Result<_, _>>()?;
            Ok(Page {
                objects,
                next: page.next,
            })
        })
    }

    fn get(&mut self, id: String) -> Result<Object, HostError> {
        self.call(|s| {
            s.scope.object("objects.get", &id, Access::Read)?;
            to_wit(s.stores.objects.get(&id)?)
        })
    }

    fn update_meta(&mut self, id: String, patch: String) -> Result<Object, HostError> {
        self.call(|s| {
            s.scope.object("objects.update-meta", &id, Access::Write)?;
            s.hold_session("objects.update-meta", &id)?;
            let patch = parse_patch(&id, &patch)?;
            to_wit(s.stores.objects.update_meta(&id, &patch)?)
        })
    }

    fn update_meta_if(
        &mut self,
        id: String,
        patch: String,
        version: u64,
    ) -> Result<Object, HostError> {
        self.call(|s| {
            s.scope
                .object("objects.update-meta-if", &id, Access::Write)?;
            s.hold_session("objects.update-meta-if", &id)?;
            let patch = parse_patch(&id, &patch)?;
            to_wit(s.stores.objects.update_meta_if(&id, &patch, version)?)
        })
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<Error> {
        Ok(match err.into_store_error()? {
            StoreError::NotFound(m) => Error::NotFound(m),
            StoreError::Invalid(m) | StoreError::InvalidName(m) => Error::Invalid(m),
            StoreError::Conflict(m) => Error::Conflict(m),
            e @ StoreError::AlreadyExists(_) => Error::Io(e.to_string()),
            StoreError::Io(m) => Error::Io(m),
            other => Error::Io(other.to_string()),
        })
    }
}

/// A meta patch must be a JSON object.
fn parse_patch(id: &str, patch: &str) -> Result<store::Meta, HostError> {
    match serde_json::from_str::<Value>(patch) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(HostError::invalid(format!(
            "meta patch for {id:?} must be a JSON object, got {}",
            json_kind(&other)
        ))),
        Err(e) => Err(HostError::invalid(format!(
            "meta patch for {id:?} is not JSON: {e}"
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
