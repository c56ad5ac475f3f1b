"""Optional integrations with other libraries, each imported only when its library is
installed."""
