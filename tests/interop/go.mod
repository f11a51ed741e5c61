module talos-csr-signer/tests/interop

go 1.24.0

require (
	github.com/siderolabs/crypto v0.6.3
	github.com/siderolabs/talos/pkg/machinery v1.11.0
	golang.org/x/net v0.40.0
	google.golang.org/grpc v1.73.0
	google.golang.org/protobuf v1.36.6
)

require (
	github.com/planetscale/vtprotobuf v0.6.1-0.20241121165744-79df5c4772f2 // indirect
	github.com/siderolabs/gen v0.8.5 // indirect
	golang.org/x/sys v0.33.0 // indirect
	golang.org/x/text v0.25.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250715232539-7130f93afb79 // indirect
)
