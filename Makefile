# Shortcuts for scripts/dev.sh, which does the work (and needs no make).
.PHONY: demo test
demo:
	bash scripts/dev.sh demo
test:
	bash scripts/dev.sh test
