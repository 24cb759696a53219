//! Who may do what: a token's role (view, edit, admin) on named namespaces or on the
//! whole cluster, and the role each action needs. A `scanner` token (cluster-wide only)
//! reads like a viewer and may set the marks of images (`images.openshift.io/deny-execution`
//! and `quality.images.openshift.io/*`) and nothing else.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    View,
    Edit,
    Admin,
    /// Reads as `view` does, and marks images.
    Scanner,
}

impl Role {
    /// How far the role reaches among view, edit and admin (a scanner reads).
    fn rank(self) -> u8 {
        match self {
            Role::View | Role::Scanner => 0,
            Role::Edit => 1,
            Role::Admin => 2,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
            Role::Scanner => "scanner",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespaces(Vec<String>),
}

/// What a request's token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scope: Scope,
}

/// What a request wants to do, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read namespaced objects (streams and their views, secret metadata).
    Read(&'a str),
    /// Change namespaced objects.
    Write(&'a str),
    /// Read the data of a namespace's secrets.
    ReadSecretData(&'a str),
    /// See that a namespace exists.
    SeeNamespace(&'a str),
    /// Read any cluster-scoped object, or any namespace's objects.
    ReadCluster,
    /// Create or relabel Images.
    WriteImages,
    /// Set or clear the marks of Images (deny-execution, quality reports).
    MarkImages,
    /// Create and delete namespaces, delete images, manage tokens.
    AdministerCluster,
}

impl Grant {
    pub fn cluster_admin() -> Grant {
        Grant { role: Role::Admin, scope: Scope::Cluster }
    }

    /// The role this grant holds in `namespace`, if any.
    pub fn role_in(&self, namespace: &str) -> Option<Role> {
        match &self.scope {
            Scope::Cluster => Some(self.role),
            Scope::Namespaces(names) => names.iter().any(|n| n == namespace).then_some(self.role),
        }
    }

    /// Whether this grant holds `role` or more (view < edit < admin) in `namespace`.
    pub fn holds_in(&self, namespace: &str, role: Role) -> bool {
        self.role_in(namespace).is_some_and(|held| held.rank() >= role.rank())
    }

    pub fn is_cluster_wide(&self) -> bool {
        self.scope == Scope::Cluster
    }

    pub fn allows(&self, action: Action<'_>) -> bool {
        let rank_in = |ns: &str| self.role_in(ns).map(Role::rank);
        let cluster_rank = if self.is_cluster_wide() { Some(self.role.rank()) } else { None };
        match action {
            Action::Read(ns) | Action::SeeNamespace(ns) => self.role_in(ns).is_some(),
            Action::Write(ns) => rank_in(ns) >= Some(1),
            Action::ReadSecretData(ns) => rank_in(ns) >= Some(2),
            Action::ReadCluster => cluster_rank.is_some(),
            Action::WriteImages => cluster_rank >= Some(1),
            Action::MarkImages => cluster_rank >= Some(1) || (self.is_cluster_wide() && self.role == Role::Scanner),
            Action::AdministerCluster => cluster_rank >= Some(2),
        }
    }

    /// Says what this grant is, for error messages.
    pub fn describe(&self) -> String {
        match &self.scope {
            Scope::Cluster => format!("{} on the whole cluster", self.role),
            Scope::Namespaces(names) => format!("{} in {}", self.role, names.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_team(role: Role) -> Grant {
        Grant { role, scope: Scope::Namespaces(vec!["team".into()]) }
    }

    #[test]
    fn namespace_roles_stay_in_their_namespaces() {
        for role in [Role::View, Role::Edit, Role::Admin] {
            let grant = in_team(role);
            assert!(grant.allows(Action::Read("team")));
            assert!(!grant.allows(Action::Read("other")));
            assert!(!grant.allows(Action::Write("other")));
            assert!(!grant.allows(Action::ReadCluster));
            assert!(!grant.allows(Action::WriteImages));
            assert!(!grant.allows(Action::AdministerCluster));
        }
        assert!(!in_team(Role::View).allows(Action::Write("team")));
        assert!(in_team(Role::Edit).allows(Action::Write("team")));
        assert!(!in_team(Role::Edit).allows(Action::ReadSecretData("team")));
        assert!(in_team(Role::Admin).allows(Action::ReadSecretData("team")));
    }

    #[test]
    fn cluster_roles() {
        let view = Grant { role: Role::View, scope: Scope::Cluster };
        assert!(view.allows(Action::Read("any")) && view.allows(Action::ReadCluster));
        assert!(!view.allows(Action::WriteImages));
        let edit = Grant { role: Role::Edit, scope: Scope::Cluster };
        assert!(edit.allows(Action::WriteImages) && !edit.allows(Action::AdministerCluster));
        assert!(Grant::cluster_admin().allows(Action::AdministerCluster));
    }

    #[test]
    fn a_scanner_reads_the_cluster_and_marks_images_only() {
        let scanner = Grant { role: Role::Scanner, scope: Scope::Cluster };
        assert!(scanner.allows(Action::ReadCluster) && scanner.allows(Action::Read("any")) && scanner.allows(Action::MarkImages));
        for action in [Action::Write("any"), Action::ReadSecretData("any"), Action::WriteImages, Action::AdministerCluster] {
            assert!(!scanner.allows(action), "{action:?}");
        }
        let in_one = Grant { role: Role::Scanner, scope: Scope::Namespaces(vec!["team".into()]) };
        assert!(!in_one.allows(Action::MarkImages), "marks are cluster-wide: only a cluster token may set them");
        assert!(Grant { role: Role::Edit, scope: Scope::Cluster }.allows(Action::MarkImages));
        assert!(!in_team(Role::Admin).allows(Action::MarkImages));
    }
}
