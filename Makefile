# Shortcuts for scripts/dev.sh, which does the work (and needs no make).
.PHONY: demo test check
demo:
	bash scripts/dev.sh demo
# The whole suite, as CI runs it.
test:
	bash scripts/dev.sh test
# The fast loop: lint, types, import contracts, dead code, unit tests.
check:
	bash scripts/dev.sh check
