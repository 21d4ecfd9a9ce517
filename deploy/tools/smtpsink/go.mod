module sendarix/smtpsink

go 1.22
