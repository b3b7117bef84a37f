//! The sharing of the image with other projects: asked for, and as Glance answers.

use serde::{Deserialize, Serialize};

/// A project the image is to be shared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareTarget {
    /// The Keystone project id (what Glance's member list holds).
    pub id: String,
    /// The name the user gave, when a name was resolved to `id`.
    pub name: Option<String>,
}

impl ShareTarget {
    /// `name (id)`, or the id alone.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

/// The journaled sharing step: which projects, and what Glance said. Every step is
/// idempotent on the server (the visibility is set, not toggled; a member added
/// twice is a 409), so a run killed at any point continues from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareState {
    /// The projects, as resolved before anything was uploaded (ids), in order.
    pub targets: Vec<ShareTarget>,
    /// `--glance-url` given for the sharing (a K5 import's image is in the region's Glance).
    pub glance_url: Option<String>,
    /// The image shared, once the sharing started.
    pub image_id: Option<String>,
    /// The image's visibility as last seen (after k5up set it).
    pub visibility: Option<String>,
    /// Project id → member status (`pending`, `accepted`, `rejected`), as Glance
    /// last reported it.
    pub members: Vec<(String, String)>,
    /// Every target is a member and its status was read back.
    pub done: bool,
    /// Why the last sharing run stopped, in Glance's words.
    pub message: Option<String>,
}

impl ShareState {
    /// A new request for `targets`.
    pub fn new(targets: Vec<ShareTarget>, glance_url: Option<String>) -> Self {
        ShareState {
            targets,
            glance_url,
            image_id: None,
            visibility: None,
            members: vec![],
            done: false,
            message: None,
        }
    }

    /// Asks for `more` (again): the step runs again, and adds each of them anew (a
    /// member Glance holds already answers 409; one removed since is added back).
    pub fn ask(&mut self, more: &[ShareTarget], glance_url: Option<String>) {
        for t in more {
            match self.targets.iter_mut().find(|x| x.id == t.id) {
                Some(x) => x.name = x.name.take().or_else(|| t.name.clone()),
                None => self.targets.push(t.clone()),
            }
            self.members.retain(|(p, _)| p != &t.id);
        }
        if glance_url.is_some() {
            self.glance_url = glance_url;
        }
        self.done = false;
        self.message = None;
    }

    /// The member status of project `id`, as last reported.
    pub fn status_of(&self, id: &str) -> Option<&str> {
        self.members.iter().find(|(p, _)| p == id).map(|(_, s)| s.as_str())
    }

    /// Records the member status of project `id`.
    pub fn set_status(&mut self, id: &str, status: &str) {
        match self.members.iter_mut().find(|(p, _)| p == id) {
            Some(m) => m.1 = status.to_string(),
            None => self.members.push((id.to_string(), status.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, name: Option<&str>) -> ShareTarget {
        ShareTarget { id: id.into(), name: name.map(str::to_string) }
    }

    #[test]
    fn asking_again_reruns_the_step_and_re_adds_only_those_asked() {
        let mut s = ShareState::new(vec![t("a", None), t("b", Some("bee"))], None);
        s.set_status("a", "accepted");
        s.set_status("b", "pending");
        s.done = true;
        s.ask(&[t("b", None), t("c", Some("sea"))], Some("http://g".into()));
        assert!(!s.done);
        assert_eq!(s.targets.iter().map(|x| x.describe()).collect::<Vec<_>>(), ["a", "bee (b)", "sea (c)"]);
        assert_eq!((s.status_of("a"), s.status_of("b"), s.status_of("c")), (Some("accepted"), None, None));
        assert_eq!(s.glance_url.as_deref(), Some("http://g"));
        s.set_status("b", "pending");
        s.set_status("b", "accepted");
        assert_eq!(s.members.len(), 2);
    }
}
