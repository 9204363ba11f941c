"""OneRoster 1.1 / 1.2 CSV zips: one container file feeding schools, students,
visitors (with their student links) and user accounts in one transaction."""
