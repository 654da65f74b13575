//! The HTTP layer over `gpt`'s inference API (issue "Serve"): not built yet.
