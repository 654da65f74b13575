//! Known model names, the cache folder, fetching and verifying.
