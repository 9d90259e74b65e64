"""Drawing only: panels, the avatar list, the status bar item and the preferences layout. No logic, no writes."""
