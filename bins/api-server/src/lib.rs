//! api-server library: placeholder until the api-server issue lands.
