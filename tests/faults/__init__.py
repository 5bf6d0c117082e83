"""The fault suite: kills, locks, lost answers, hostile rows and names, each run counted."""
