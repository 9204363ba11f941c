# The kind walkthrough (README "Try it on kind"): a local cluster with the operator, a
# demo PostgreSQL and one district, reachable with `sftp -P 2222 springfield@localhost`.
#
#   make kind-up images postgres install district   # cluster, images, database, operator, district
#   make upload run watch                            # send sample files, import them now, watch
#   make kind-down                                   # delete the cluster
#
# Needs docker, kind, kubectl, helm and the OpenSSH client. tests/e2e/ runs the same
# steps as pytest tests when a cluster is reachable.

CLUSTER        ?= visitor-sync
RELEASE        ?= visitor-sync
RELEASE_NS     ?= visitor-sync-system
DISTRICTS_NS   ?= districts
DISTRICT       ?= springfield
TAG            ?= dev
IMAGE_REPO     ?= visitor-sync
SFTP_IMAGE_REPO ?= visitor-sync-sftp
IMAGE          := $(IMAGE_REPO):$(TAG)
SFTP_IMAGE     := $(SFTP_IMAGE_REPO):$(TAG)
KUBECTL        ?= kubectl --context kind-$(CLUSTER)
HELM           ?= helm --kube-context kind-$(CLUSTER)

.PHONY: help kind-up images postgres install district upload run watch status kind-down

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

kind-up:  ## Create the kind cluster (kind-config.yaml: NodePort 30022 -> 127.0.0.1:2222).
	@kind get clusters 2>/dev/null | grep -qx '$(CLUSTER)' \
		|| kind create cluster --name $(CLUSTER) --config kind-config.yaml --wait 120s

images:  ## Build the operator/importer and SFTP images (scripts/images) and load them into the cluster.
	IMAGE=$(IMAGE) SFTP_IMAGE=$(SFTP_IMAGE) scripts/images
	kind load docker-image --name $(CLUSTER) $(IMAGE) $(SFTP_IMAGE)

postgres:  ## Demo-only PostgreSQL and the districts' database Secret (deploy/kind/postgres.yaml).
	$(KUBECTL) apply -f deploy/kind/postgres.yaml
	$(KUBECTL) -n visitor-sync-demo-db rollout status deployment/postgres --timeout=180s

install:  ## Install the chart with the local images (deploy/kind/values.yaml).
	$(HELM) upgrade --install $(RELEASE) charts/visitor-sync --namespace $(RELEASE_NS) \
		--create-namespace -f deploy/kind/values.yaml \
		--set image.repository=$(IMAGE_REPO) --set image.tag=$(TAG) \
		--set sftpImage.repository=$(SFTP_IMAGE_REPO) --set sftpImage.tag=$(TAG) \
		--wait --timeout 180s

district:  ## Declare the district (examples/district-kind.yaml) and wait until it is Ready.
	$(KUBECTL) apply -f examples/district-kind.yaml
	$(KUBECTL) -n $(DISTRICTS_NS) wait districtsync/$(DISTRICT) --for=condition=Ready \
		--timeout=300s

upload:  ## Upload the sample files with sftp, as the district (deploy/kind/upload.sh).
	NAMESPACE=$(DISTRICTS_NS) DISTRICT=$(DISTRICT) KUBECTL="$(KUBECTL)" deploy/kind/upload.sh

run:  ## Ask for an import now and wait until the operator has started it.
	@token=$$(date +%s); \
	$(KUBECTL) -n $(DISTRICTS_NS) annotate districtsync $(DISTRICT) --overwrite \
		sync.visitoraware.io/run-requested-at="$$token" && \
	$(KUBECTL) -n $(DISTRICTS_NS) wait districtsync/$(DISTRICT) --timeout=120s \
		--for=jsonpath='{.status.lastHandledRunRequest}'="$$token" && \
	echo "run $$token started; 'make watch' shows its result"

watch:  ## Watch the district's status (Ready, Last import, Result); Ctrl-C to stop.
	$(KUBECTL) -n $(DISTRICTS_NS) get districtsync -w

status:  ## The last import's result, counts and message.
	$(KUBECTL) -n $(DISTRICTS_NS) get districtsync $(DISTRICT) -o jsonpath='{.status.lastImport}{"\n"}'

kind-down:  ## Delete the kind cluster and everything in it.
	kind delete cluster --name $(CLUSTER)
