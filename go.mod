module github.com/acoeventer/eventer

go 1.26
