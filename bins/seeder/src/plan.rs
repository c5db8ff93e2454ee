//! The upsert plan: each valid row matched by extension number against what is stored, so a
//! second run with the same input changes nothing.

use std::collections::HashMap;
use std::fmt;

use domain::{Extension, ExtensionNumber, ExtensionPatch, RecordId};

use crate::input::Row;

/// One write the seeder will make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The extension is not stored yet.
    Create(Row),
    /// The extension is stored with different user fields; only those are sent.
    Update {
        /// The input row.
        row: Row,
        /// The stored record's id.
        id: RecordId,
        /// The fields that differ.
        patch: ExtensionPatch,
        /// The record as stored.
        before: Box<Extension>,
    },
}

impl Action {
    /// The input row this action comes from.
    pub fn row(&self) -> &Row {
        match self {
            Action::Create(row) | Action::Update { row, .. } => row,
        }
    }
}

impl fmt::Display for Action {
    /// One line for `--dry-run`: what would be written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create(row) => write!(
                f,
                "create {}: agent_name {:?}, department {:?}, is_active {}",
                row.extension,
                row.agent_name.as_str(),
                row.department.as_str(),
                row.is_active.unwrap_or(true)
            ),
            Action::Update {
                row, patch, before, ..
            } => {
                write!(f, "update {}:", row.extension)?;
                let mut sep = " ";
                if let Some(name) = &patch.agent_name {
                    write!(
                        f,
                        "{sep}agent_name {:?} -> {:?}",
                        before.agent_name.as_str(),
                        name.as_str()
                    )?;
                    sep = ", ";
                }
                if let Some(dept) = &patch.department {
                    write!(
                        f,
                        "{sep}department {:?} -> {:?}",
                        before.department.as_str(),
                        dept.as_str()
                    )?;
                    sep = ", ";
                }
                if let Some(active) = patch.is_active {
                    write!(f, "{sep}is_active {} -> {active}", before.is_active)?;
                }
                Ok(())
            }
        }
    }
}

/// What the seeder will do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes, in input order.
    pub actions: Vec<Action>,
    /// Rows whose record already holds exactly these values.
    pub unchanged: usize,
}

impl Plan {
    /// How many records would be created.
    pub fn creates(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Create(_)))
            .count()
    }

    /// How many records would be updated.
    pub fn updates(&self) -> usize {
        self.actions.len() - self.creates()
    }
}

/// Matches rows to stored records by extension number. A row equals its record when the agent
/// name, the department and (when the row states it) the active flag are the same.
pub fn plan(existing: &[Extension], rows: &[Row]) -> Plan {
    let stored: HashMap<&ExtensionNumber, &Extension> =
        existing.iter().map(|r| (&r.extension, r)).collect();
    let mut out = Plan::default();
    for row in rows {
        let Some(record) = stored.get(&row.extension) else {
            out.actions.push(Action::Create(row.clone()));
            continue;
        };
        let patch = ExtensionPatch {
            agent_name: (row.agent_name != record.agent_name).then(|| row.agent_name.clone()),
            department: (row.department != record.department).then(|| row.department.clone()),
            is_active: row.is_active.filter(|a| *a != record.is_active),
        };
        if patch.is_empty() {
            out.unchanged += 1;
        } else {
            out.actions.push(Action::Update {
                row: row.clone(),
                id: record.id.clone(),
                patch,
                before: Box::new((*record).clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, Department, NewExtension};

    fn row(line: usize, ext: &str, name: &str, dept: &str, active: Option<bool>) -> Row {
        Row {
            line,
            extension: ExtensionNumber::parse(ext).expect("ext"),
            agent_name: AgentName::parse(name).expect("name"),
            department: Department::parse(dept).expect("dept"),
            is_active: active,
        }
    }

    fn stored(id: &str, r: &Row, active: bool) -> Extension {
        let mut new: NewExtension = r.to_new();
        new.is_active = active;
        Extension::create(
            RecordId::parse(id).expect("id"),
            new,
            "2026-01-01T00:00:00Z".parse().expect("time"),
        )
    }

    #[test]
    fn upsert_by_extension_number() {
        let existing = vec![
            stored(
                "aaaaaaaaaaaaaaaaaaaaaaaa",
                &row(0, "1001", "Alice", "Sales", None),
                true,
            ),
            stored(
                "bbbbbbbbbbbbbbbbbbbbbbbb",
                &row(0, "1002", "Bob", "Sales", None),
                false,
            ),
            stored(
                "cccccccccccccccccccccccc",
                &row(0, "1003", "Carol", "Sales", None),
                true,
            ),
        ];
        let rows = vec![
            row(2, "1001", "Alice", "Sales", None),
            // Silent about is_active: an inactive record stays inactive.
            row(3, "1002", "Bob", "Sales", None),
            row(4, "1003", "Caroline", "Support", Some(false)),
            row(5, "1004", "Dan", "Sales", None),
            row(6, "1001", "Alice", "Sales", Some(true)),
        ];
        let p = plan(&existing, &rows);
        assert_eq!(p.unchanged, 3);
        assert_eq!((p.creates(), p.updates()), (1, 1));
        let lines: Vec<String> = p.actions.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "update 1003: agent_name \"Carol\" -> \"Caroline\", department \"Sales\" -> \"Support\", is_active true -> false",
                "create 1004: agent_name \"Dan\", department \"Sales\", is_active true",
            ]
        );
        match &p.actions[0] {
            Action::Update { id, patch, .. } => {
                assert_eq!(id.as_str(), "cccccccccccccccccccccccc");
                assert_eq!(patch.is_active, Some(false));
            }
            other => panic!("{other:?}"),
        }
        // Reactivating says so, and only that.
        let p = plan(&existing, &[row(9, "1002", "Bob", "Sales", Some(true))]);
        assert_eq!(
            p.actions[0].to_string(),
            "update 1002: is_active false -> true"
        );
    }
}
