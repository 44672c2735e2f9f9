//! brokerctl subcommands (one file per subcommand).
