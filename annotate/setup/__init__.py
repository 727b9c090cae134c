"""Study configuration, for admins: the setup rules, their forms and pages, blindness."""
