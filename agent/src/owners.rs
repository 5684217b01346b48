//! Which bundle owns each object, across all bundles of this agent, so that no object is
//! owned by two bundles and no bundle prunes another's objects.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::object::ObjectRef;

/// The ownership index: every object in every bundle's inventory, and objects claimed by an
/// apply under way.
#[derive(Default)]
pub struct Owners {
    by_object: Mutex<HashMap<ObjectRef, String>>,
}

impl Owners {
    /// Claims `objects` for `bundle`, all or none: fails with each object another bundle owns.
    pub fn claim<'a>(
        &self,
        bundle: &str,
        objects: impl IntoIterator<Item = &'a ObjectRef> + Clone,
    ) -> Result<(), Vec<(ObjectRef, String)>> {
        let mut by_object = self.by_object.lock();
        let taken: Vec<(ObjectRef, String)> = objects
            .clone()
            .into_iter()
            .filter_map(|id| {
                let owner = by_object.get(id)?;
                (owner != bundle).then(|| (id.clone(), owner.clone()))
            })
            .collect();
        if !taken.is_empty() {
            return Err(taken);
        }
        for id in objects {
            by_object.insert(id.clone(), bundle.to_owned());
        }
        Ok(())
    }

    /// Gives up `bundle`'s ownership of each of `objects` it owns.
    pub fn release<'a>(&self, bundle: &str, objects: impl IntoIterator<Item = &'a ObjectRef>) {
        let mut by_object = self.by_object.lock();
        for id in objects {
            if by_object.get(id).is_some_and(|owner| owner == bundle) {
                by_object.remove(id);
            }
        }
    }

    /// Makes `bundle` own exactly `objects`.
    pub fn set<'a>(&self, bundle: &str, objects: impl IntoIterator<Item = &'a ObjectRef>) {
        let mut by_object = self.by_object.lock();
        by_object.retain(|_, owner| owner != bundle);
        for id in objects {
            by_object.insert(id.clone(), bundle.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectRef {
        ObjectRef {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("a".into()),
            name: name.into(),
        }
    }

    #[test]
    fn a_claim_on_another_bundles_object_fails_whole() {
        let owners = Owners::default();
        assert_eq!(owners.claim("web", &[id("x")]), Ok(()));
        assert_eq!(
            owners.claim("web", &[id("x"), id("y")]),
            Ok(()),
            "own objects may be claimed again"
        );
        assert_eq!(
            owners.claim("db", &[id("z"), id("x")]),
            Err(vec![(id("x"), "web".into())])
        );
        // Nothing of the failed claim was taken.
        assert_eq!(owners.claim("web", &[id("z")]), Ok(()));
    }

    #[test]
    fn released_and_replaced_objects_can_be_claimed_by_others() {
        let owners = Owners::default();
        owners.set("web", &[id("x"), id("y")]);
        owners.release("db", &[id("x")]);
        assert!(
            owners.claim("db", &[id("x")]).is_err(),
            "db cannot release web's object"
        );
        owners.release("web", &[id("x")]);
        assert_eq!(owners.claim("db", &[id("x")]), Ok(()));
        owners.set("web", &[]);
        assert_eq!(owners.claim("db", &[id("y")]), Ok(()));
    }
}
