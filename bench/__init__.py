"""The ws-counter benchmark: ws-counter beside a naive baseline, a popular peer and the floors."""
