# The two commands of the README, and the set-up they share. Everything heavy is cached outside
# the repository (~/.cache/compofa-operator), so reruns take seconds.
.PHONY: test demo setup

node_modules/.package-lock.json: package.json package-lock.json
	npm ci
	@touch $@

# Native TensorFlow for tfjs-node and the Kubernetes control-plane binaries.
setup: node_modules/.package-lock.json
	npm run setup

# Type check, lint, format check and every test.
test: setup
	npm test

# The embedded local setup: today a real control plane with labeled device nodes.
demo: setup
	npm run demo
