//! The sample call center of `--demo`: forty agents in four departments, extensions 1001 to
//! 1040, with names from several countries (some outside ASCII, as real rosters are).

/// One agent of the sample call center.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleAgent {
    /// The extension number, `1001` to `1040`.
    pub extension: &'static str,
    /// The agent's name.
    pub name: &'static str,
    /// One of Sales, Support, Billing, Retention.
    pub department: &'static str,
}

/// The departments, ten agents each, in extension order.
const DEPARTMENTS: [&str; 4] = ["Sales", "Support", "Billing", "Retention"];

/// The extensions 1001 to 1040, as text.
const EXTENSIONS: [&str; 40] = [
    "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "1015", "1016", "1017", "1018", "1019", "1020", "1021", "1022", "1023", "1024",
    "1025", "1026", "1027", "1028", "1029", "1030", "1031", "1032", "1033", "1034", "1035", "1036",
    "1037", "1038", "1039", "1040",
];

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

/// The forty sample agents `--demo` seeds into an empty store and `ami-sim` serves by default:
/// extensions 1001 to 1040, ten per department.
pub fn sample_agents() -> impl ExactSizeIterator<Item = SampleAgent> {
    NAMES
        .iter()
        .zip(EXTENSIONS)
        .enumerate()
        .map(|(i, (name, extension))| SampleAgent {
            extension,
            name,
            department: DEPARTMENTS[i / 10],
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_agents_in_four_departments() {
        let agents: Vec<SampleAgent> = sample_agents().collect();
        assert_eq!(agents.len(), 40);
        for (i, a) in agents.iter().enumerate() {
            assert_eq!(a.extension, (1001 + i).to_string());
        }
        for dept in DEPARTMENTS {
            let n = agents.iter().filter(|a| a.department == dept).count();
            assert_eq!(n, 10, "{dept}");
        }
        assert!(agents.iter().any(|a| !a.name.is_ascii()));
    }
}
