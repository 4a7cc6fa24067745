"""The stick report: what a trip did, what expires, and when the stick must come back.

An offline CA cannot send mail; the stick is its only voice. Every export writes the same
facts as report.json (for machines) and REPORT.html (for people), and `spoolca status`
shows them on the appliance's terminal.
"""
