//! The live dashboard page and its embedded assets (owned by the dashboard work).
