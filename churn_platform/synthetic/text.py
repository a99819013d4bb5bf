"""Ticket text pools. The words carry sentiment so that a real lexicon model (VADER) can read it."""

NEGATIVE_SUBJECTS = [
    "App keeps crashing",
    "Charged twice again",
    "Terrible experience with sync",
    "Nothing works after the update",
    "Very disappointed with support",
    "Data export is broken",
    "Unacceptable downtime",
]
NEGATIVE_BODIES = [
    "This is unacceptable. The app crashes every time I open a report and I am really frustrated.",
    "I was charged twice and nobody answered my last two emails. Awful service.",
    "Sync has been broken for days, I lost work and I am angry. Considering cancelling.",
    "Horrible update, everything is slower and the dashboard fails to load. Very disappointed.",
    "Worst support experience I have had. The problem is still not fixed and I hate waiting.",
    "We are unhappy with the product lately, too many bugs and errors. Please fix this.",
]
NEUTRAL_SUBJECTS = [
    "Question about invoices",
    "How do I export data?",
    "Change billing address",
    "Add a new user",
    "API limits",
]
NEUTRAL_BODIES = [
    "How can I download last month's invoice as a PDF?",
    "Where do I change the billing address for our account?",
    "Please add a second admin user to our workspace.",
    "What are the API rate limits on our plan?",
    "Can you tell me how to export all projects to CSV?",
]
POSITIVE_SUBJECTS = [
    "Thanks for the help",
    "Love the new dashboard",
    "Great feature request",
    "Quick question, great product",
]
POSITIVE_BODIES = [
    "Thanks a lot, the fix works great and the team is happy.",
    "Love the new dashboard, it is excellent. Could you also add a dark mode?",
    "Great product and friendly support, thank you! One small question about exports.",
    "Awesome update, everything is faster now. Thanks!",
]
