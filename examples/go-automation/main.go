// A Go program deploying an image cache and a container group that uses it, through the
// Automation API: the program runs inline (no Go language host), and the engine reaches the
// resources through the provider plugin pulumi-resource-eci-imagecache (on PATH).
//
//	go run . up|preview|destroy
//
// The stack is $STACK (default "dev") of the project eci-imagecache-go; the backend and the
// passphrase come from the environment as for the CLI (PULUMI_BACKEND_URL,
// PULUMI_CONFIG_PASSPHRASE). $REGISTRY names the registry with the demo images
// (127.0.0.1:5055 unless set), $SIZE_GIB the cache's size (5 unless set).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ImageCache is eci-imagecache:index:ImageCache: the outputs this program reads.
type ImageCache struct {
	pulumi.CustomResourceState

	CacheId pulumi.StringOutput `pulumi:"cacheId"`
	Status  pulumi.StringOutput `pulumi:"status"`
	SizeGib pulumi.IntOutput    `pulumi:"sizeGib"`
}

// ContainerGroup is eci-imagecache:index:ContainerGroup: the outputs this program reads.
type ContainerGroup struct {
	pulumi.CustomResourceState

	CacheUsed   pulumi.StringOutput `pulumi:"cacheUsed"`
	MatchDegree pulumi.StringOutput `pulumi:"matchDegree"`
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func program(registry string, sizeGib int) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		var cache ImageCache
		err := ctx.RegisterResource("eci-imagecache:index:ImageCache", "cache", pulumi.Map{
			"images": pulumi.StringArray{
				pulumi.String(registry + "/demo/web:1.0"),
				pulumi.String(registry + "/demo/worker:1.0"),
			},
			"sizeGib":    pulumi.Int(sizeGib),
			"layerReuse": pulumi.Bool(true),
		}, &cache)
		if err != nil {
			return err
		}
		var web ContainerGroup
		err = ctx.RegisterResource("eci-imagecache:index:ContainerGroup", "web", pulumi.Map{
			"containers": pulumi.Array{pulumi.Map{
				"name":  pulumi.String("web"),
				"image": pulumi.String(registry + "/demo/web:1.0"),
				"ports": pulumi.IntArray{pulumi.Int(80)},
			}},
			"restartPolicy": pulumi.String("Never"),
			"cache":         pulumi.String("explicit"),
			"cacheId":       cache.ID(),
		}, &web)
		if err != nil {
			return err
		}
		ctx.Export("cacheId", cache.CacheId)
		ctx.Export("cacheStatus", cache.Status)
		ctx.Export("cacheSizeGib", cache.SizeGib)
		ctx.Export("webCache", web.CacheUsed)
		ctx.Export("webMatch", web.MatchDegree)
		return nil
	}
}

func run(ctx context.Context, action string) error {
	sizeGib, err := strconv.Atoi(env("SIZE_GIB", "5"))
	if err != nil {
		return fmt.Errorf("SIZE_GIB: %w", err)
	}
	stack, err := auto.UpsertStackInlineSource(ctx, env("STACK", "dev"), "eci-imagecache-go",
		program(env("REGISTRY", "127.0.0.1:5055"), sizeGib))
	if err != nil {
		return err
	}
	switch action {
	case "up":
		result, err := stack.Up(ctx, optup.ProgressStreams(os.Stderr))
		if err != nil {
			return err
		}
		outputs := map[string]any{}
		for name, output := range result.Outputs {
			outputs[name] = output.Value
		}
		return json.NewEncoder(os.Stdout).Encode(outputs)
	case "preview":
		result, err := stack.Preview(ctx, optpreview.ExpectNoChanges(),
			optpreview.ProgressStreams(os.Stderr))
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(result.ChangeSummary)
	case "destroy":
		_, err := stack.Destroy(ctx, optdestroy.ProgressStreams(os.Stderr))
		return err
	}
	return fmt.Errorf("unknown action %q: use up, preview or destroy", action)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-automation up|preview|destroy")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
