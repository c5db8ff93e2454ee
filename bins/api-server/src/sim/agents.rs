//! The sample call center of `--demo`: forty agents in four departments, extensions 1001 to
//! 1040, with names from several countries (some outside ASCII, as real rosters are).

use domain::{AgentName, Department, ExtensionNumber, NewExtension};

/// The departments, ten agents each, in extension order.
const DEPARTMENTS: [&str; 4] = ["Sales", "Support", "Billing", "Retention"];

/// Forty agent names, ten per department.
const NAMES: [&str; 40] = [
    // Sales, 1001-1010.
    "Alice Martin",
    "Bob Okafor",
    "Chloé Dubois",
    "Daniel Kowalski",
    "Emma Johansson",
    "Farid Haddad",
    "Grace O'Neill",
    "Hiroshi Tanaka",
    "Inês Carvalho",
    "Jonas Weber",
    // Support, 1011-1020.
    "Karin Müller",
    "Liam Murphy",
    "María José Fernández",
    "Nikolai Petrov",
    "Olivia Brown",
    "Paweł Zieliński",
    "Quentin Lefèvre",
    "Rosa Bianchi",
    "Søren Nielsen",
    "Tomás Ó Briain",
    // Billing, 1021-1030.
    "Uma Patel",
    "Victor Nguyen",
    "Wiktoria Lewandowska",
    "Xavier Dupont",
    "Yasmin Al-Sayed",
    "Zoë van Dijk",
    "Ahmet Yılmaz",
    "Björn Lindqvist",
    "Camille Rousseau",
    "Dmitri Ivanov",
    // Retention, 1031-1040.
    "Elena Popescu",
    "Fatima Zahra Benali",
    "Gabriel Silva",
    "Hana Novák",
    "Isabel García",
    "Jakob Huber",
    "Kofi Mensah",
    "Lucía Romero",
    "Mei Chen 陈美",
    "Noah Williams",
];

/// The forty sample agents `--demo` seeds into an empty store: extensions 1001 to 1040, ten per
/// department, all active.
pub fn sample_agents() -> Vec<NewExtension> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| NewExtension {
            extension: ExtensionNumber::parse(&(1001 + i).to_string())
                .expect("invariant: 1001..=1040 are valid extension numbers"),
            agent_name: AgentName::parse(name).expect("invariant: sample names are valid"),
            department: Department::parse(DEPARTMENTS[i / 10])
                .expect("invariant: sample departments are valid"),
            is_active: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_agents_in_four_departments() {
        let agents = sample_agents();
        assert_eq!(agents.len(), 40);
        assert_eq!(agents[0].extension.as_str(), "1001");
        assert_eq!(agents[39].extension.as_str(), "1040");
        for dept in DEPARTMENTS {
            let n = agents
                .iter()
                .filter(|a| a.department.as_str() == dept)
                .count();
            assert_eq!(n, 10, "{dept}");
        }
        let mut numbers: Vec<&str> = agents.iter().map(|a| a.extension.as_str()).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), 40, "extensions are unique");
        assert!(agents.iter().any(|a| !a.agent_name.as_str().is_ascii()));
    }
}
